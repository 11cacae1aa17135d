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
                 processed: "#1a7f37", errors: "#c62828", rps: "#1f6feb",
                 p50_ms: "#1a7f37", p99_ms: "#b26a00", late_ok: "#1a7f37", late_failed: "#c62828" };
  var KINDS = { depth: ["queued", "started", "failed"], traffic: ["processed", "errors"],
                rate: ["rps"], latency: ["p50_ms", "p99_ms"], lateness: ["late_ok", "late_failed"] };
  var charts = {};
  var range = "hour";

  function build(el, data) {
    var kind = el.getAttribute("data-kind");
    var labels = JSON.parse(el.getAttribute("data-labels") || "{}");
    var names = KINDS[kind];
    var points = el.hasAttribute("data-points");  // a scatter: one dot per run
    var series = [{}].concat(names.map(function (n) {
      if (points) {
        return { label: labels[n] || n, stroke: COLORS[n], width: 0,
                 points: { show: true, size: 7, fill: COLORS[n] } };
      }
      return { label: labels[n] || n, stroke: COLORS[n], width: 2,
               fill: n === "errors" || n === "failed" ? "rgba(198,40,40,.08)" : undefined,
               spanGaps: kind !== "latency",  // a minute without calls has no latency
               points: { show: kind === "latency" || kind === "rate", size: 5 } };
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
    var bySrc = {};
    els.forEach(function (el) {
      var src = el.getAttribute("data-src") || ("/console/series.json?range=" + range);
      (bySrc[src] = bySrc[src] || []).push(el);
    });
    Object.keys(bySrc).forEach(function (src) {
      fetch(src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          bySrc[src].forEach(function (el) { build(el, data); });
        })
        .catch(function () { /* the next refresh tries again */ });
    });
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
    var el = document.querySelector(".chart[data-kind]");
    // the job page's lateness chart grows by the second; the others per minute
    if (el) { setInterval(refresh, document.getElementById("chart-lateness") ? 3000 : 30000); }
  });
})();
