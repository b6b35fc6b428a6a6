// Swagger UI of /docs, from the vendored bundle (no CDN, no inline script: the page's CSP allows 'self' only).
window.addEventListener("load", () => {
  window.ui = window.SwaggerUIBundle({
    url: document.body.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default validator is a public web service: never called from here
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
