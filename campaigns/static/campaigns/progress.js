// Live campaign progress: polls the admin's small JSON endpoints and updates
// the page in place (no full reload). Served locally; nothing from a CDN.
(function () {
  "use strict";
  var EVERY_MS = 3000;

  function poll(url, apply) {
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) { if (data) { apply(data); } })
        .catch(function () {})
        .finally(function () { window.setTimeout(tick, EVERY_MS); });
    }
    window.setTimeout(tick, EVERY_MS);
  }

  function panel(root) {
    poll(root.dataset.progressUrl, function (data) {
      data.reply_rate_percent = (data.reply_rate * 100).toFixed(1);
      data.estimated_finish = data.estimated_finish || "—";
      root.querySelectorAll("[data-field]").forEach(function (el) {
        var key = el.dataset.field;
        if (key === "skipped_by_reason") {
          el.replaceChildren.apply(el, Object.keys(data[key]).map(function (reason) {
            var li = document.createElement("li");
            li.textContent = reason + ": " + data[key][reason];
            return li;
          }));
        } else if (key in data) {
          el.textContent = data[key];
        }
      });
      var bar = document.getElementById("campaign-progress-bar");
      if (bar) { bar.value = data.percent_done; }
      root.querySelectorAll(".campaign-control[data-when]").forEach(function (form) {
        form.hidden = form.dataset.when.split(" ").indexOf(data.status) < 0;
      });
    });
  }

  function list(root) {
    var bars = root.querySelectorAll(".campaign-progress[data-campaign]");
    if (!bars.length) { return; }
    var ids = Array.prototype.map.call(bars, function (el) { return el.dataset.campaign; });
    poll(root.dataset.progressListUrl + "?ids=" + ids.join(","), function (data) {
      bars.forEach(function (el) {
        var row = data[el.dataset.campaign];
        if (!row) { return; }
        el.querySelector("progress").value = row.total ? Math.round(100 * row.done / row.total) : 0;
        ["done", "total", "sent"].forEach(function (key) {
          el.querySelector('[data-progress="' + key + '"]').textContent = row[key];
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("campaign-panel");
    if (root) { panel(root); }
    var table = document.getElementById("campaign-list");
    if (table) { list(table); }
  });
})();
