// modelreg ui: sortable tables, and following the store (a reload when it changed).
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.children[index];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, index) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute("data-dir") !== "asc";
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var nx = parseFloat(x), ny = parseFloat(y);
          var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", asc ? "asc" : "desc");
      });
    });
  });
  var every = parseInt(document.body.getAttribute("data-poll-ms") || "0", 10);
  if (!every) { return; }
  var mark = null;
  function look() {
    fetch("/api/state", { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (state) {
        var editing = document.activeElement && document.activeElement.tagName === "INPUT"
          && document.activeElement.value;
        if (mark !== null && state.mark !== mark && !editing) { window.location.reload(); }
        mark = state.mark;
      }).catch(function () { /* the server is restarting: look again later */ });
  }
  look();
  window.setInterval(look, every);
}());
