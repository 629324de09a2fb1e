// Log in: the session cookie is HttpOnly; the page reads its CSRF token from /api/me.
"use strict";
fetch("api/login").then((r) => r.json()).then((state) => {
  document.getElementById("site").textContent = state.site.name;
  document.title = `Log in · ${state.site.name}`;
  document.getElementById("bootstrap").hidden = state.staff_exist;
  if (state.auth === "open") location.href = "./";
});
document.getElementById("login").onsubmit = async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  const r = await fetch("api/login", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({username: f.username.value, password: f.password.value}),
  });
  if (r.ok) {
    location.href = "./";
  } else {
    document.getElementById("login-result").textContent = (await r.json()).error;
    f.password.value = "";
  }
};
