// Sign in: username + password -> the ct_session cookie (HttpOnly), then back to the page asked for.

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");

function nextPage() {
  const n = new URLSearchParams(location.search).get("next") || "";
  return /^\/ui\/[A-Za-z0-9._:/@%?=&+-]*$/.test(n) && !n.includes("//") && !n.startsWith("/ui/login") ? n : "/ui/fleet";
}

function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = false;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError("Enter your username and password.");
    (username ? form.password : form.username).focus();
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    const resp = await fetch("/api/v1/auth/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (resp.ok) {
      location.assign(nextPage());
      return;
    }
    const body = await resp.json().catch(() => null);
    const wait = Number(resp.headers.get("Retry-After")) || 0;
    showError(resp.status === 401 ? "Wrong username or password, or the account is locked."
      : resp.status === 429 ? `${body && body.error && body.error.code === "login_busy"
        ? "The server is busy checking other sign-ins" : "Too many sign-in attempts"}: try again in ${
        Math.max(wait, 1)} s.`
      : (body && body.error && body.error.message) || `Sign-in failed (HTTP ${resp.status}).`);
    form.password.value = "";
    form.password.focus();
  } catch (e) {
    showError("ColdTrace cannot be reached. Check the connection and try again.");
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
});
