"""The only JavaScript of the site: a client-side filter for tables (no external resources).

An `<input data-filter="TABLE_ID">` hides the rows of that table (`tr[data-search]`) whose text
does not contain the query, and sections marked `data-filter-group` left with no visible row.
`?q=...` in the URL pre-fills the first box. The body gets `data-search-ready` once it has run,
which the browser test checks.
"""

FILTER_SCRIPT = """
(function () {
  "use strict";
  var boxes = document.querySelectorAll("input[data-filter]");
  var query = new URLSearchParams(window.location.search).get("q");
  Array.prototype.forEach.call(boxes, function (box, index) {
    var scope = document.getElementById(box.getAttribute("data-filter"));
    if (!scope) { return; }
    var rows = scope.querySelectorAll("tr[data-search]");
    var groups = scope.querySelectorAll("[data-filter-group]");
    var count = document.getElementById(box.getAttribute("data-filter") + "-count");
    function apply() {
      var q = box.value.trim().toLowerCase();
      var shown = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var hit = !q || row.getAttribute("data-search").indexOf(q) !== -1;
        row.hidden = !hit;
        if (hit) { shown += 1; }
      });
      Array.prototype.forEach.call(groups, function (group) {
        group.hidden = !group.querySelector("tr[data-search]:not([hidden])");
      });
      if (count) { count.textContent = shown + " of " + rows.length; }
    }
    if (query && index === 0) { box.value = query; }
    box.addEventListener("input", apply);
    apply();
  });
  document.body.setAttribute("data-search-ready", "1");
})();
"""
