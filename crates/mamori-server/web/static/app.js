// mamori web UI: the few behaviours that need a script. Loaded from /static (the CSP allows
// no inline script). Everything works without it except the idle warning and auto-print.
"use strict";
(function () {
  const body = document.body;
  const csrf = body.dataset.csrf;

  // htmx requests carry the CSRF token like forms do.
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf;
  });

  // Idle logout with a warning a minute ahead (the server ends the session at the same
  // time on its own; this only spares the person a surprise and clears the screen).
  const idle = parseInt(body.dataset.idleSeconds || "0", 10);
  if (idle > 0) {
    const warning = document.getElementById("idle-warning");
    const warnAfter = Math.max(idle - 60, Math.floor(idle / 2)) * 1000;
    let warnTimer, logoutTimer;
    const logout = function () {
      const form = document.getElementById("logout-form");
      document.getElementById("logout-reason").value = "idle";
      // Hide what is on screen before the round trip.
      document.getElementById("main").replaceChildren();
      form.submit();
    };
    const arm = function () {
      clearTimeout(warnTimer);
      clearTimeout(logoutTimer);
      if (warning) warning.hidden = true;
      warnTimer = setTimeout(function () { if (warning) warning.hidden = false; }, warnAfter);
      logoutTimer = setTimeout(logout, idle * 1000 - 2000);
    };
    arm();
    document.addEventListener("htmx:afterRequest", arm);
    const cont = document.getElementById("idle-continue");
    if (cont) {
      cont.addEventListener("click", function () {
        fetch("/keepalive", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
          .then(function (r) { if (r.ok) arm(); else window.location.assign("/login"); });
      });
    }
  }

  // The language switch comes back to the same page.
  document.querySelectorAll("a[data-lang-switch]").forEach(function (a) {
    a.addEventListener("click", function () {
      a.href = a.pathname + "?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
  });

  document.querySelectorAll("a[data-back]").forEach(function (a) {
    a.addEventListener("click", function (e) {
      if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
    });
  });

  // A copied record (the server has already audited and counted it): onto the clipboard.
  document.addEventListener("htmx:afterSwap", function () {
    var buffer = document.querySelector("textarea[data-copy]");
    if (!buffer) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(buffer.value);
    } else {
      buffer.classList.remove("sr-only");
      buffer.select();
      document.execCommand("copy");
    }
    buffer.removeAttribute("data-copy");
  });

  if (body.hasAttribute("data-autoprint")) {
    window.addEventListener("load", function () { window.print(); });
  }
})();
