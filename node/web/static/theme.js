// Before the page paints: the member's theme (light or dark, kept in the browser), so it never flashes.
(function () {
  "use strict";
  try {
    const v = JSON.parse(localStorage.getItem("theme") || '"dark"');
    document.documentElement.dataset.theme = v === "light" ? "light" : "dark";
  } catch (e) { document.documentElement.dataset.theme = "dark"; }
})();
