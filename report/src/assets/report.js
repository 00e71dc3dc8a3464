// podtrace report script (inlined into the page). Reads the embedded JSON and renders the
// trace list (paginated) and one trace's waterfall at a time. Every piece of data goes into
// the page through textContent or attribute setters, never as markup.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var PAGE = 50, MAX_ROWS = 2000;
  var state = { page: 0, sort: "errors", filter: "", errorsOnly: false, selected: null, list: DATA.traces };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtDur(ns) {
    if (ns >= 1e9) return (ns / 1e9).toFixed(2) + "s";
    if (ns >= 1e6) return (ns / 1e6).toFixed(2) + "ms";
    if (ns >= 1e3) return Math.round(ns / 1e3) + "\u00b5s";
    return ns + "ns";
  }
  function fmtTime(us) {
    var d = new Date(Math.floor(us / 1000));
    return isNaN(d.getTime()) ? String(us) : d.toISOString().replace("T", " ").replace("Z", "");
  }
  // Distinct colours for the first services (in resource order), a hash hue after that.
  var PALETTE = ["#3b7dd8", "#2a9d8f", "#e9a23b", "#8e5bd0", "#d65f8a", "#5aa469", "#c4672d",
                 "#4aa3c7", "#9c8a3a", "#6d7fcc"];
  var colors = new Map();
  DATA.resources.forEach(function (r) {
    if (!colors.has(r.service) && colors.size < PALETTE.length) colors.set(r.service, PALETTE[colors.size]);
  });
  function color(name) {
    var c = colors.get(name);
    if (c) return c;
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    c = "hsl(" + (h % 360) + ",50%,50%)";
    colors.set(name, c);
    return c;
  }
  function service(span) { var r = DATA.resources[span.r]; return r ? r.service : "?"; }

  var searchCache = new Map();
  function searchText(t) {
    var s = searchCache.get(t);
    if (s === undefined) {
      var parts = [t.id, t.root, t.root_service];
      for (var i = 0; i < t.spans.length; i++) parts.push(t.spans[i].name, service(t.spans[i]), t.spans[i].id);
      s = parts.join("\n").toLowerCase();
      searchCache.set(t, s);
    }
    return s;
  }
  var sorters = {
    errors: function (a, b) { return (b.errors > 0) - (a.errors > 0) || b.dur - a.dur; },
    duration: function (a, b) { return b.dur - a.dur; },
    start: function (a, b) { return a.start_us - b.start_us; },
    spans: function (a, b) { return b.spans.length - a.spans.length || b.dur - a.dur; }
  };
  function recompute() {
    var f = state.filter.toLowerCase();
    var list = DATA.traces.filter(function (t) {
      if (state.errorsOnly && t.errors === 0) return false;
      return !f || searchText(t).indexOf(f) >= 0;
    });
    list.sort(sorters[state.sort] || sorters.errors);
    state.list = list;
    state.page = 0;
  }

  function renderList() {
    var body = $("trace-list").tBodies[0];
    body.replaceChildren();
    var pages = Math.max(1, Math.ceil(state.list.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    var from = state.page * PAGE;
    state.list.slice(from, from + PAGE).forEach(function (t) {
      var tr = el("tr");
      tr.dataset.traceId = t.id;
      if (state.selected === t) tr.className = "selected";
      tr.appendChild(el("td", null, fmtTime(t.start_us)));
      var root = el("td");
      var svc = el("span", "wf-svc", t.root_service);
      svc.style.color = color(t.root_service);
      root.appendChild(svc);
      root.appendChild(document.createTextNode(t.root));
      tr.appendChild(root);
      tr.appendChild(el("td", null, fmtDur(t.dur)));
      tr.appendChild(el("td", null, t.spans.length));
      tr.appendChild(el("td", null, t.services));
      var errs = el("td");
      if (t.errors > 0) errs.appendChild(el("span", "err-badge", t.errors));
      tr.appendChild(errs);
      var id = el("td"); id.appendChild(el("code", null, t.id)); tr.appendChild(id);
      tr.addEventListener("click", function () { select(t); });
      body.appendChild(tr);
    });
    if (state.list.length === 0) {
      var tr = el("tr"), td = el("td", null, "no traces match");
      td.colSpan = 7; tr.appendChild(td); body.appendChild(tr);
    }
    $("pager-label").textContent = "page " + (state.page + 1) + " of " + pages + " \u00b7 " +
      state.list.length + " of " + DATA.traces.length + " traces";
    $("pager-prev").disabled = state.page === 0;
    $("pager-next").disabled = state.page >= pages - 1;
  }

  function detail(s, t) {
    var box = el("div", "wf-detail");
    var table = el("table");
    function row(k, v) {
      var tr = el("tr"); tr.appendChild(el("td", null, k)); tr.appendChild(el("td", null, v)); table.appendChild(tr);
    }
    row("span id", s.id);
    row("parent span id", s.parent ? s.parent + (s.orphan ? " (not in this capture)" : "") : "(root)");
    row("kind", s.kind);
    row("service", service(s));
    row("start", "+" + fmtDur(s.off) + " after the trace start");
    row("duration", fmtDur(s.dur));
    row("status", s.err ? "error" + (s.msg ? ": " + s.msg : "") : "unset");
    s.attrs.forEach(function (kv) { row(kv[0], kv[1]); });
    var r = DATA.resources[s.r];
    if (r) r.attrs.forEach(function (kv) { row("resource " + kv[0], kv[1]); });
    box.appendChild(table);
    return box;
  }

  function renderWaterfall(t) {
    var wf = $("waterfall");
    wf.replaceChildren();
    if (!t) { wf.appendChild(el("p", "hint", "Select a trace to see its spans.")); return; }
    var head = el("div", "wf-head");
    head.appendChild(el("strong", null, "Trace "));
    head.appendChild(el("code", null, t.id));
    head.appendChild(document.createTextNode(" \u00b7 " + fmtTime(t.start_us) + " \u00b7 " + fmtDur(t.dur) +
      " \u00b7 " + t.spans.length + " spans \u00b7 " + t.services + " services" +
      (t.errors ? " \u00b7 " + t.errors + " errors" : "")));
    wf.appendChild(head);
    var axis = el("div", "wf-row wf-axis");
    axis.appendChild(el("div", "wf-label hint", "service / span"));
    axis.appendChild(el("div", "hint", "0 \u2192 " + fmtDur(t.dur)));
    axis.appendChild(el("div", "wf-dur hint", "duration"));
    wf.appendChild(axis);
    var total = Math.max(t.dur, 1);
    var shown = Math.min(t.spans.length, MAX_ROWS);
    for (var i = 0; i < shown; i++) {
      (function (s) {
        var row = el("div", "wf-row" + (s.err ? " err" : ""));
        row.dataset.spanId = s.id;
        var label = el("div", "wf-label");
        label.style.paddingLeft = (8 + s.depth * 16) + "px";
        var svc = service(s);
        var sv = el("span", "wf-svc", svc); sv.style.color = color(svc);
        label.appendChild(sv);
        label.appendChild(el("span", "wf-kind", s.kind));
        label.appendChild(el("span", "wf-name", s.name));
        if (s.orphan) label.appendChild(el("span", "wf-orphan", "orphan"));
        label.title = svc + " \u00b7 " + s.name;
        row.appendChild(label);
        var track = el("div", "wf-track");
        var bar = el("div", "wf-bar" + (s.err ? " err" : ""));
        bar.style.left = (s.off / total * 100) + "%";
        bar.style.width = Math.max(s.dur / total * 100, 0.2) + "%";
        bar.style.background = color(svc);
        bar.title = fmtDur(s.dur);
        track.appendChild(bar);
        row.appendChild(track);
        row.appendChild(el("div", "wf-dur", fmtDur(s.dur)));
        var open = null;
        row.addEventListener("click", function () {
          if (open) { open.remove(); open = null; }
          else { open = detail(s, t); row.after(open); }
        });
        wf.appendChild(row);
      })(t.spans[i]);
    }
    if (shown < t.spans.length) {
      wf.appendChild(el("p", "hint", (t.spans.length - shown) + " more spans not shown"));
    }
  }

  function select(t, fromLink) {
    state.selected = t;
    if (t && fromLink) {
      var i = state.list.indexOf(t);
      if (i >= 0) state.page = Math.floor(i / PAGE);
    }
    renderList();
    renderWaterfall(t);
    // A shareable link to this trace: report.html#trace=<id>.
    if (t && !fromLink && window.history && history.replaceState) {
      try { history.replaceState(null, "", "#trace=" + t.id); } catch (e) { /* some file:// setups */ }
    }
  }
  function linked() {
    var m = /^#trace=([0-9a-f]{32})$/.exec(location.hash);
    if (!m) return null;
    for (var i = 0; i < DATA.traces.length; i++) if (DATA.traces[i].id === m[1]) return DATA.traces[i];
    return null;
  }
  window.addEventListener("hashchange", function () {
    var t = linked();
    if (t) { select(t, true); $("traces").scrollIntoView(); }
  });

  var timer = null;
  $("trace-filter").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { state.filter = e.target.value; recompute(); renderList(); }, 150);
  });
  $("trace-sort").addEventListener("change", function (e) { state.sort = e.target.value; recompute(); renderList(); });
  $("errors-only").addEventListener("change", function (e) { state.errorsOnly = e.target.checked; recompute(); renderList(); });
  $("pager-prev").addEventListener("click", function () { state.page--; renderList(); });
  $("pager-next").addEventListener("click", function () { state.page++; renderList(); });

  recompute();
  var first = linked();
  if (first) select(first, true);
  else if (state.list.length) { state.selected = state.list[0]; renderList(); renderWaterfall(state.list[0]); }
  else select(null);
  document.body.dataset.ready = "1";
})();
