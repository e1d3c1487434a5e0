// Refresh the dashboard's tiles in place every few seconds: no full reload,
// no library. The server renders the same fragment the page started with.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;
  const url = root.dataset.refreshUrl;
  const seconds = parseInt(root.dataset.refreshSeconds, 10) || 30;
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (response.ok) {
        root.innerHTML = await response.text();
      }
    } catch (err) {
      // Keep the last picture; the next tick tries again.
    }
  }
  setInterval(refresh, seconds * 1000);
})();
