// canghai console behaviour: confirm dialogs and the overview charts (uPlot).
// No inline scripts anywhere (the CSP allows scripts from this origin only).
(function () {
  "use strict";

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-confirm]");
    if (el && !window.confirm(el.getAttribute("data-confirm"))) {
      ev.preventDefault();
    }
  });

  var COLORS = { queued: "#1f6feb", started: "#b26a00", failed: "#c62828",
                 processed: "#1a7f37", errors: "#c62828" };
  var KINDS = { depth: ["queued", "started", "failed"], traffic: ["processed", "errors"] };
  var charts = {};
  var range = "hour";

  function build(el, data) {
    var kind = el.getAttribute("data-kind");
    var labels = JSON.parse(el.getAttribute("data-labels") || "{}");
    var names = KINDS[kind];
    var series = [{}].concat(names.map(function (n) {
      return { label: labels[n] || n, stroke: COLORS[n], width: 2,
               fill: n === "errors" || n === "failed" ? "rgba(198,40,40,.08)" : undefined,
               spanGaps: true };
    }));
    var values = [data.t].concat(names.map(function (n) { return data[n]; }));
    var width = Math.max(280, el.clientWidth || 600);
    if (charts[el.id]) {
      charts[el.id].setData(values);
      charts[el.id].setSize({ width: width, height: 220 });
      return;
    }
    charts[el.id] = new uPlot({ width: width, height: 220, series: series,
      axes: [{}, { size: 50 }], scales: { x: { time: true } } }, values, el);
  }

  function refresh() {
    var els = document.querySelectorAll(".chart[data-kind]");
    if (!els.length || typeof uPlot === "undefined") { return; }
    fetch("/console/series.json?range=" + range, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        els.forEach(function (el) { build(el, data); });
      })
      .catch(function () { /* the next refresh tries again */ });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-range]");
    if (!btn) { return; }
    range = btn.getAttribute("data-range");
    document.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b === btn ? "true" : "false");
    });
    refresh();
  });

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { charts[id].setSize({ width: Math.max(280, el.clientWidth), height: 220 }); }
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    if (document.querySelector(".chart[data-kind]")) { setInterval(refresh, 30000); }
  });
})();
