// ReDoc of /redoc, from the vendored standalone bundle (no CDN, no Google fonts, no inline script).
window.addEventListener("load", () => {
  window.Redoc.init(document.body.dataset.openapi, { hideDownloadButton: false, disableSearch: false },
    document.getElementById("redoc"));
});
