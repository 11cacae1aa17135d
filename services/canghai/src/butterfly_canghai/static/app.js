// canghai console behaviour: confirm dialogs, the overview charts (uPlot) and the bulk
// action's Act run in parts with live progress.
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

  // -- bulk action by filter: Act in parts ---------------------------------------------
  // The form (data-parts: the part endpoint) posts the whole run in one request when this
  // does not run. Here Act posts the form's fields to data-parts once per part, with the
  // cursor the previous part answered, and shows scanned / acted so far against the
  // preview's totals (when the preview on the page was of the same fields).
  var bulkPreviewed = null;  // the fields the preview on the page counted

  function bulkFields(form) {
    var fields = new FormData(form);
    fields.delete("csrf_token");
    return new URLSearchParams(fields).toString();
  }

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (all, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : all;
    });
  }

  // The page's counts and message rows after a run (the form's topic and status).
  // After a run in parts: the page's regions that show counts (the status choice, the
  // count chips, the list with its total, pager and purge count) read again from the
  // list's own page (its data-url: the page may have been a POST's answer), each swapped
  // for its fresh copy.
  function refreshMessages() {
    var list = document.getElementById("message-list");
    if (typeof htmx === "undefined" || !list || !list.dataset.url) { return; }
    ["message-filters", "message-counts", "message-list"].forEach(function (id) {
      if (document.getElementById(id)) {
        htmx.ajax("GET", list.dataset.url,
                  { target: "#" + id, select: "#" + id, swap: "outerHTML" });
      }
    });
  }


  function runBulk(form) {
    var box = form.closest("section") || form.parentNode;
    var labels = JSON.parse(form.getAttribute("data-labels") || "{}");
    var wrap = box.querySelector('[data-field="bulk-progress"]');
    var bar = wrap.querySelector("progress");
    var text = wrap.querySelector('[data-field="bulk-progress-text"]');
    var preview = box.querySelector('[data-field="bulk-preview"]');
    var total = null;
    var expected = null;
    if (preview && bulkPreviewed === bulkFields(form)) {
      total = Number(preview.getAttribute("data-scanned"));
      expected = Number(preview.getAttribute("data-matched"));
    }
    box.querySelectorAll('[data-field="bulk-done"], [data-field="bulk-error"]')
      .forEach(function (el) { el.remove(); });
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var action = form.elements.bulk_action.value;
    var sum = { scanned: 0, matched: 0, acted: 0, steps: 0, part: 0 };
    wrap.hidden = false;
    if (total !== null) {
      bar.max = Math.max(total, 1);
      bar.value = 0;
    } else {
      bar.removeAttribute("value");  // indeterminate: no preview of these fields
    }

    function show() {
      if (total !== null) {
        bar.value = Math.min(sum.scanned, bar.max);
        text.textContent = fill(labels.progress, { scanned: sum.scanned, total: total,
          acted: sum.acted, matched: expected, part: sum.part });
      } else {
        text.textContent = fill(labels.progress_open, { scanned: sum.scanned,
          acted: sum.acted, part: sum.part });
      }
    }

    function say(cls, field, words, extra) {
      var p = document.createElement("p");
      p.className = cls;
      p.setAttribute("role", cls === "alert" ? "alert" : "status");
      p.setAttribute("data-field", field);
      Object.keys(extra).forEach(function (k) { p.setAttribute(k, extra[k]); });
      p.textContent = words;
      wrap.parentNode.insertBefore(p, wrap);
      buttons.forEach(function (b) { b.disabled = false; });
    }

    function finish() {
      show();
      bar.max = 1;  // the walk is done, whatever the preview counted
      bar.value = 1;
      say("note-ok", "bulk-done", fill(labels.done, { action: labels[action] || action,
        matched: sum.matched, acted: sum.acted, scanned: sum.scanned, steps: sum.steps }),
        { "data-acted": sum.acted, "data-matched": sum.matched, "data-parts": sum.part });
      refreshMessages();
    }

    function stop(why) {
      say("alert", "bulk-error", fill(labels.stopped, { part: sum.part, acted: sum.acted,
        why: why }), {});
    }

    function part(cursor) {
      var body = new URLSearchParams(new FormData(form));
      body.set("cursor", cursor);
      fetch(form.getAttribute("data-parts"), { method: "POST", body: body,
        credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          return r.json().catch(function () { return null; })
            .then(function (data) { return { r: r, data: data }; });
        })
        .then(function (got) {
          var d = got.data;
          if (!got.r.ok || !d || d.error) {
            stop((d && d.error) || got.r.headers.get("x-reason") || String(got.r.status));
            return;
          }
          ["scanned", "matched", "acted", "steps"].forEach(function (k) { sum[k] += d[k]; });
          sum.part = d.part;
          show();
          if (d.done) { finish(); } else { part(d.cursor); }
        })
        .catch(function (err) { stop(String(err)); });
    }

    show();
    part("");
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches("form.bulk-form[data-parts]")) { return; }
    if (!ev.submitter || ev.submitter.value !== "act") { return; }
    ev.preventDefault();
    runBulk(form);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var bulk = document.querySelector("form.bulk-form[data-parts]");
    if (bulk && document.querySelector('[data-field="bulk-preview"]')) {
      bulkPreviewed = bulkFields(bulk);  // the page shows the preview of these fields
    }
    refresh();
    var el = document.querySelector(".chart[data-kind]");
    // the job page's lateness chart grows by the second; the others per minute
    if (el) { setInterval(refresh, document.getElementById("chart-lateness") ? 3000 : 30000); }
  });
})();
