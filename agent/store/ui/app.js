/*
 * hostprof store web UI: services, profile types, time range with timeline, label filters,
 * the flamegraph (the same renderer as the HTML encoder, /ui/assets/flamegraph.js), a
 * top-functions table and a diff of two time ranges.
 *
 * It only calls the store's read API (docs/store-api.md), same origin, and loads nothing from
 * the internet. The view state lives in location.hash, so a view can be bookmarked and shared.
 */
(function () {
  "use strict";

  var FG = window.HostprofFlamegraph;
  var $ = function (id) {
    return document.getElementById(id);
  };
  var PRESETS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
  var HIDDEN_LABELS = { __name__: 1, service_name: 1 };

  var state = {
    services: [],
    service: "",
    type: "",
    mode: "single",
    range: "1h",
    from: 0,
    until: 0,
    filters: [],
    left: null,
    right: null,
    side: "left",
    diffBy: "time", // "time": two time ranges; "label": two values of one label
    diffLabel: "",
    leftValue: "",
    rightValue: "",
  };
  var ui = {
    state: state,
    loading: 0,
    renders: 0,
    lastResponse: null,
    timeline: null,
  };
  window.hostprofStore = ui; // for the browser test and the curious

  // ---------------------------------------------------------------- helpers
  function nowSec() {
    return Math.floor(Date.now() / 1000);
  }

  function api(path, params) {
    var qs = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== "") qs.set(k, params[k]);
    });
    // Absolute, from the origin: when the page was opened as http://user:token@host/, a
    // relative URL would carry those credentials, and fetch() refuses such URLs.
    var url = location.origin + path + (qs.toString() ? "?" + qs.toString() : "");
    ui.loading++;
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (resp) {
        if (resp.ok) return resp.json();
        return resp
          .json()
          .catch(function () {
            return {};
          })
          .then(function (body) {
            throw new Error(body.message || "HTTP " + resp.status + " from " + path);
          });
      })
      .finally(function () {
        ui.loading--;
      });
  }

  function showError(err) {
    var el = $("st-error");
    if (!err) {
      el.hidden = true;
      return;
    }
    el.textContent = String(err.message || err);
    el.hidden = false;
  }

  function quote(v) {
    return '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }

  /**
   * The query for the current service, type and filters: type{service_name="x",k="v"}, with
   * an optional extra `name="value"` matcher (one side of a label comparison).
   */
  function query(extraName, extraValue) {
    var matchers = ["service_name=" + quote(state.service)];
    state.filters.forEach(function (f) {
      matchers.push(f.name + f.op + quote(f.value));
    });
    if (extraName) matchers.push(extraName + "=" + quote(extraValue));
    return state.type + "{" + matchers.join(",") + "}";
  }

  function typeLabel(id) {
    var p = id.split(":");
    if (p.length < 5) return { main: id, sub: "" };
    return { main: p[1] + " (" + p[2] + ")", sub: p[0] + (p[3] ? " · period " + p[3] : "") };
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function toLocalInput(sec) {
    var d = new Date(sec * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fromLocalInput(text) {
    var t = new Date(text).getTime();
    return isNaN(t) ? 0 : Math.floor(t / 1000);
  }

  function fmtTime(sec, withDate) {
    var d = new Date(sec * 1000);
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (!withDate) return hm;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm + ":" + pad(d.getSeconds());
  }

  function fmtRange(r) {
    if (!r) return "";
    return fmtTime(r.from, true) + " → " + fmtTime(r.until, true) + " (" + FG.formatValue((r.until - r.from) * 1e9, "nanoseconds") + ")";
  }

  /** Resolves a preset range to absolute seconds (custom ranges are already absolute). */
  function resolveRange() {
    if (state.range !== "custom") {
      state.until = nowSec();
      state.from = state.until - PRESETS[state.range];
    }
    $("st-range").value = state.range;
    $("st-from").value = toLocalInput(state.from);
    $("st-until").value = toLocalInput(state.until);
  }

  /** Baseline and comparison: the two halves of the span that has data (else of the range). */
  function defaultDiffRanges() {
    var lo = state.from;
    var hi = state.until;
    var tl = ui.timeline;
    if (tl && tl.samples) {
      var first = -1;
      var last = -1;
      for (var i = 0; i < tl.samples.length; i++) {
        if (tl.samples[i] > 0) {
          if (first < 0) first = i;
          last = i;
        }
      }
      if (first >= 0 && last > first) {
        lo = Math.max(state.from, tl.startTime + first * tl.durationDelta);
        hi = Math.min(state.until, tl.startTime + (last + 1) * tl.durationDelta);
      }
    }
    var mid = Math.floor((lo + hi) / 2);
    state.left = { from: lo, until: mid };
    state.right = { from: mid, until: hi };
  }

  // ---------------------------------------------------------------- URL state
  function saveHash() {
    var p = new URLSearchParams();
    if (state.service) p.set("service", state.service);
    if (state.type) p.set("type", state.type);
    p.set("range", state.range);
    if (state.range === "custom") {
      p.set("from", state.from);
      p.set("until", state.until);
    }
    state.filters.forEach(function (f) {
      p.append("f", f.name + f.op + f.value);
    });
    if (state.mode === "diff" && state.diffBy === "label") {
      p.set("mode", "diff");
      p.set("by", "label");
      p.set("dl", state.diffLabel);
      p.set("lv", state.leftValue);
      p.set("rv", state.rightValue);
    } else if (state.mode === "diff" && state.left && state.right) {
      p.set("mode", "diff");
      p.set("left", state.left.from + "-" + state.left.until);
      p.set("right", state.right.from + "-" + state.right.until);
    }
    var hash = "#" + p.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  function loadHash() {
    var p = new URLSearchParams(location.hash.slice(1));
    state.service = p.get("service") || "";
    state.type = p.get("type") || "";
    state.range = p.get("range") in PRESETS || p.get("range") === "custom" ? p.get("range") : "1h";
    if (state.range === "custom") {
      state.from = +p.get("from") || nowSec() - 3600;
      state.until = +p.get("until") || nowSec();
    }
    state.filters = p.getAll("f").map(function (text) {
      var m = /^([A-Za-z_][A-Za-z0-9_.]*)(=~|!~|!=|=)(.*)$/.exec(text);
      return m ? { name: m[1], op: m[2], value: m[3] } : null;
    }).filter(Boolean);
    state.mode = p.get("mode") === "diff" ? "diff" : "single";
    function span(text) {
      var m = /^(\d+)-(\d+)$/.exec(text || "");
      return m ? { from: +m[1], until: +m[2] } : null;
    }
    state.left = span(p.get("left"));
    state.right = span(p.get("right"));
    state.diffBy = p.get("by") === "label" ? "label" : "time";
    state.diffLabel = p.get("dl") || "";
    state.leftValue = p.get("lv") || "";
    state.rightValue = p.get("rv") || "";
  }

  // ---------------------------------------------------------------- sidebar
  function renderServices() {
    var list = $("st-services");
    list.innerHTML = "";
    if (!state.services.length) {
      var li = document.createElement("li");
      li.className = "st-empty-item";
      li.textContent = "No profiles in the last 7 days. Send some with hostprof's push, the pyroscope SDK, or POST /ingest.";
      list.appendChild(li);
    }
    // A filter box appears once the list is long enough to need one.
    var filterBox = $("st-service-filter");
    filterBox.hidden = state.services.length < 8;
    var needle = filterBox.hidden ? "" : filterBox.value.trim().toLowerCase();
    state.services.forEach(function (svc) {
      if (needle && svc.service_name.toLowerCase().indexOf(needle) < 0 && svc.service_name !== state.service) return;
      var li = document.createElement("li");
      li.dataset.service = svc.service_name;
      li.textContent = svc.service_name;
      var small = document.createElement("small");
      small.textContent = svc.profile_types.length + " profile type" + (svc.profile_types.length === 1 ? "" : "s");
      li.appendChild(small);
      if (svc.service_name === state.service) li.classList.add("st-active");
      li.addEventListener("click", function () {
        selectService(svc.service_name);
      });
      list.appendChild(li);
    });
    renderTypes();
  }

  function currentService() {
    for (var i = 0; i < state.services.length; i++) {
      if (state.services[i].service_name === state.service) return state.services[i];
    }
    return null;
  }

  function renderTypes() {
    var list = $("st-types");
    list.innerHTML = "";
    var svc = currentService();
    if (!svc) return;
    svc.profile_types.forEach(function (id) {
      var li = document.createElement("li");
      var l = typeLabel(id);
      li.dataset.type = id;
      li.title = id;
      li.textContent = l.main;
      var small = document.createElement("small");
      small.textContent = l.sub;
      li.appendChild(small);
      if (id === state.type) li.classList.add("st-active");
      li.addEventListener("click", function () {
        state.type = id;
        renderTypes();
        loadLabelNames();
        refresh();
      });
      list.appendChild(li);
    });
  }

  function pickType(svc) {
    if (svc.profile_types.indexOf(state.type) >= 0) return state.type;
    var cpu = svc.profile_types.filter(function (t) {
      return /^process_cpu:cpu:/.test(t);
    });
    return cpu[0] || svc.profile_types[0] || "";
  }

  function selectService(name) {
    if (name !== state.service) state.filters = [];
    state.service = name;
    var svc = currentService();
    state.type = svc ? pickType(svc) : "";
    renderServices();
    renderChips();
    loadLabelNames();
    refresh();
  }

  function loadServices() {
    return api("/api/services", {}).then(function (services) {
      state.services = services || [];
      if (!currentService() && state.services.length) {
        state.service = state.services[0].service_name;
      }
      var svc = currentService();
      state.type = svc ? pickType(svc) : "";
      renderServices();
    });
  }

  // ---------------------------------------------------------------- label filters
  function renderChips() {
    var box = $("st-chips");
    box.innerHTML = "";
    state.filters.forEach(function (f, i) {
      var chip = document.createElement("span");
      chip.className = "st-chip";
      chip.textContent = f.name + " " + f.op + " " + f.value;
      var x = document.createElement("button");
      x.type = "button";
      x.title = "Remove this filter";
      x.textContent = "×";
      x.addEventListener("click", function () {
        state.filters.splice(i, 1);
        renderChips();
        refresh();
      });
      chip.appendChild(x);
      box.appendChild(chip);
    });
  }

  function loadLabelNames() {
    var sel = $("st-filter-name");
    if (!state.type) return Promise.resolve();
    return api("/pyroscope/label-names", {
      query: state.type + "{service_name=" + quote(state.service) + "}",
      from: state.from,
      until: state.until,
    }).then(function (names) {
      sel.innerHTML = "<option value=''>add filter…</option>";
      (names || []).forEach(function (n) {
        if (HIDDEN_LABELS[n] || n.indexOf("__") === 0) return;
        var o = document.createElement("option");
        o.value = n;
        o.textContent = n;
        sel.appendChild(o);
      });
      $("st-filter-value").disabled = true;
      $("st-filter-add").disabled = true;
    }).catch(showError);
  }

  function loadLabelValues(name) {
    var input = $("st-filter-value");
    var list = $("st-filter-values");
    list.innerHTML = "";
    input.value = "";
    input.disabled = !name;
    $("st-filter-add").disabled = true;
    if (!name) return Promise.resolve([]);
    return api("/pyroscope/label-values", {
      label: name,
      query: state.type + "{service_name=" + quote(state.service) + "}",
      from: state.from,
      until: state.until,
    }).then(function (values) {
      (values || []).forEach(function (v) {
        var o = document.createElement("option");
        o.value = v;
        list.appendChild(o);
      });
      if (values && values.length) input.value = values[0];
      $("st-filter-add").disabled = !input.value;
      return values;
    }).catch(showError);
  }

  function addFilter() {
    var name = $("st-filter-name").value;
    var value = $("st-filter-value").value;
    if (!name) return;
    state.filters.push({ name: name, op: $("st-filter-op").value, value: value });
    $("st-filter-name").value = "";
    loadLabelValues("");
    renderChips();
    refresh();
  }

  // ---------------------------------------------------------------- timeline
  /** Draws the timeline bars and, in diff mode, the two selected ranges. */
  function drawTimeline() {
    var canvas = $("st-timeline");
    var tl = ui.timeline;
    var w = canvas.clientWidth;
    var h = canvas.clientHeight;
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var axisH = 16;
    var plotH = h - axisH;
    var span = Math.max(1, state.until - state.from);
    var xOf = function (t) {
      return ((t - state.from) / span) * w;
    };
    ctx.fillStyle = "#f7f8fa";
    ctx.fillRect(0, 0, w, plotH);
    var timeDiff = state.mode === "diff" && state.diffBy === "time";
    if (timeDiff && state.left && state.right) {
      ctx.fillStyle = "rgba(59,130,246,0.16)";
      ctx.fillRect(xOf(state.left.from), 0, xOf(state.left.until) - xOf(state.left.from), plotH);
      ctx.fillStyle = "rgba(234,88,12,0.16)";
      ctx.fillRect(xOf(state.right.from), 0, xOf(state.right.until) - xOf(state.right.from), plotH);
    }
    var max = 0;
    var sum = 0;
    if (tl && tl.samples) {
      tl.samples.forEach(function (v) {
        if (v > max) max = v;
        sum += v;
      });
    }
    if (tl && max > 0) {
      var bw = Math.max(2, (tl.durationDelta / span) * w - ((tl.durationDelta / span) * w > 4 ? 1 : 0));
      for (var i = 0; i < tl.samples.length; i++) {
        var v = tl.samples[i];
        if (!v) continue;
        var t = tl.startTime + i * tl.durationDelta;
        var bh = Math.max(1.5, (v / max) * (plotH - 8));
        var inLeft = timeDiff && state.left && t >= state.left.from && t < state.left.until;
        var inRight = timeDiff && state.right && t >= state.right.from && t < state.right.until;
        ctx.fillStyle = inLeft ? "#3b82f6" : inRight ? "#ea580c" : "#f59e0b";
        ctx.fillRect(xOf(t), plotH - bh, bw, bh);
      }
    }
    // Time axis: about one tick per 110 px, at round intervals.
    ctx.fillStyle = "#8a919c";
    ctx.strokeStyle = "#e5e7eb";
    ctx.font = "11px ui-sans-serif, system-ui, sans-serif";
    ctx.textBaseline = "top";
    var steps = [10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
    var want = span / Math.max(1, w / 110);
    var step = steps[steps.length - 1];
    for (var s = 0; s < steps.length; s++) {
      if (steps[s] >= want) {
        step = steps[s];
        break;
      }
    }
    var tz = new Date().getTimezoneOffset() * 60;
    var first = Math.ceil((state.from - tz) / step) * step + tz;
    for (var tick = first; tick <= state.until; tick += step) {
      var x = Math.round(xOf(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, plotH);
      ctx.stroke();
      var label = step >= 86400 ? fmtTime(tick, true).slice(5, 10)
        : step < 60 ? fmtTime(tick, true).slice(11) : fmtTime(tick, false);
      var tw = ctx.measureText(label).width;
      if (x - tw / 2 > 0 && x + tw / 2 < w) ctx.fillText(label, x - tw / 2, plotH + 3);
    }
    if (ui.brush) {
      var b0 = Math.min(ui.brush.x0, ui.brush.x1);
      var b1 = Math.max(ui.brush.x0, ui.brush.x1);
      ctx.fillStyle = timeDiff ? (state.side === "left" ? "rgba(59,130,246,0.3)" : "rgba(234,88,12,0.3)") : "rgba(17,24,39,0.15)";
      ctx.fillRect(b0, 0, b1 - b0, plotH);
    }
    var unit = ui.lastResponse && ui.lastResponse.metadata ? ui.lastResponse.metadata.units : "";
    $("st-timeline-legend").textContent = tl
      ? FG.formatValue(sum, unit) + " in " + FG.formatValue(tl.durationDelta * 1e9, "nanoseconds") + " buckets, peak " +
        FG.formatValue(max, unit) + ". Drag across the timeline to " + (timeDiff ? "set the " + (state.side === "left" ? "baseline" : "comparison") + " range." : "zoom into a time range.")
      : "";
  }

  function bindTimeline() {
    var canvas = $("st-timeline");
    function xAt(ev) {
      var r = canvas.getBoundingClientRect();
      return Math.max(0, Math.min(r.width, ev.clientX - r.left));
    }
    canvas.addEventListener("mousedown", function (ev) {
      ui.brush = { x0: xAt(ev), x1: xAt(ev) };
      drawTimeline();
    });
    window.addEventListener("mousemove", function (ev) {
      if (!ui.brush) return;
      ui.brush.x1 = xAt(ev);
      drawTimeline();
    });
    // Hovering the timeline shows the bucket under the pointer.
    var tip = document.createElement("div");
    tip.className = "hfg-tooltip";
    tip.hidden = true;
    document.body.appendChild(tip);
    canvas.addEventListener("mousemove", function (ev) {
      var tl = ui.timeline;
      if (!tl || !tl.samples || ui.brush) {
        tip.hidden = true;
        return;
      }
      var r = canvas.getBoundingClientRect();
      var t = state.from + ((ev.clientX - r.left) / r.width) * (state.until - state.from);
      var i = Math.floor((t - tl.startTime) / tl.durationDelta);
      if (i < 0 || i >= tl.samples.length) {
        tip.hidden = true;
        return;
      }
      var start = tl.startTime + i * tl.durationDelta;
      var unit = ui.lastResponse && ui.lastResponse.metadata ? ui.lastResponse.metadata.units : "";
      tip.innerHTML = "<div class='hfg-tt-name'>" + FG.escapeHtml(FG.formatValue(tl.samples[i], unit)) + "</div>" +
        "<div class='hfg-tt-where'>" + FG.escapeHtml(fmtTime(start, true) + " + " + tl.durationDelta + " s") + "</div>";
      tip.hidden = false;
      tip.style.left = ev.clientX + 12 + window.scrollX + "px";
      tip.style.top = ev.clientY + 14 + window.scrollY + "px";
    });
    canvas.addEventListener("mouseleave", function () {
      tip.hidden = true;
    });
    window.addEventListener("mouseup", function () {
      if (!ui.brush) return;
      var b = ui.brush;
      ui.brush = null;
      var w = canvas.getBoundingClientRect().width;
      if (Math.abs(b.x1 - b.x0) < 4) {
        drawTimeline();
        return;
      }
      var span = state.until - state.from;
      var t0 = Math.floor(state.from + (Math.min(b.x0, b.x1) / w) * span);
      var t1 = Math.ceil(state.from + (Math.max(b.x0, b.x1) / w) * span);
      selectTime(t0, t1);
    });
  }

  /** Applies a time selection: the whole range, or one side of the diff. */
  function selectTime(t0, t1) {
    if (state.mode === "diff" && state.diffBy === "time") {
      state[state.side] = { from: t0, until: t1 };
    } else {
      state.range = "custom";
      state.from = t0;
      state.until = t1;
    }
    refresh();
  }

  // ---------------------------------------------------------------- flamegraph
  /**
   * Whether bare function names are Python: the profiler says so (spyName), or the names show
   * CPython's own code-object names. pyroscope-io's pprof carries bare names only.
   */
  function looksPython(fb, md) {
    if (/py|hostprof/i.test(md.spyName || "")) return true;
    var names = (fb && fb.names) || [];
    for (var i = 0; i < names.length; i++) {
      if (/^<module>$|\.<locals>\.|\.py(:\d+)?\)?$/.test(names[i])) return true;
    }
    return false;
  }

  var fg = new FG($("st-flamegraph"), {
    inverted: true,
    onZoom: function (node) {
      $("st-reset").disabled = !node;
    },
  });
  ui.fg = fg;

  function renderSummary(resp) {
    var md = resp.metadata || {};
    var el = $("st-summary");
    if (state.mode === "diff") {
      var byLabel = state.diffBy === "label";
      el.innerHTML = (byLabel ? FG.escapeHtml(state.diffLabel + "=" + state.leftValue) : "baseline") + " <b>" +
        FG.escapeHtml(FG.formatValue(resp.leftTicks || 0, md.units)) + "</b> → " +
        (byLabel ? FG.escapeHtml(state.diffLabel + "=" + state.rightValue) : "comparison") + " <b>" +
        FG.escapeHtml(FG.formatValue(resp.rightTicks || 0, md.units)) + "</b>";
    } else {
      var fb = resp.flamebearer || {};
      el.innerHTML = "<b>" + FG.escapeHtml(FG.formatValue(fb.numTicks || 0, md.units)) + "</b> " +
        FG.escapeHtml(typeLabel(state.type).main) + (md.spyName ? " · " + FG.escapeHtml(md.spyName) : "");
    }
    $("st-crumb").innerHTML = state.service
      ? "<b>" + FG.escapeHtml(state.service) + "</b> · " + FG.escapeHtml(query())
      : "";
  }

  function renderTable() {
    FG.renderTopTable($("st-top"), fg, {
      limit: 300,
      onPick: function (row) {
        $("st-search").value = row.name;
        runSearch();
      },
    });
  }

  function runSearch() {
    var q = $("st-search").value.trim();
    var res = fg.search(q);
    $("st-matched").textContent = !q ? "" : res.frames ? "matched " + FG.percent(res.ticks, fg.numTicks) : "no match";
  }

  function fillSelect(sel, values, chosen) {
    sel.innerHTML = "";
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v;
      o.textContent = v;
      sel.appendChild(o);
    });
    sel.value = chosen;
  }

  /**
   * Fills the label comparison pickers: the label (default: the first one) and its baseline
   * and comparison values (default: its first two values).
   */
  function diffLabels() {
    var base = state.type + "{service_name=" + quote(state.service) + "}";
    return api("/pyroscope/label-names", { query: base, from: state.from, until: state.until })
      .then(function (names) {
        names = (names || []).filter(function (n) {
          return !HIDDEN_LABELS[n] && n.indexOf("__") !== 0;
        });
        fillSelect($("st-diff-name"), names, state.diffLabel);
        if (names.indexOf(state.diffLabel) < 0) state.diffLabel = names[0] || "";
        $("st-diff-name").value = state.diffLabel;
        if (!state.diffLabel) return [];
        return api("/pyroscope/label-values", { label: state.diffLabel, query: base, from: state.from, until: state.until });
      })
      .then(function (values) {
        values = values || [];
        if (values.indexOf(state.leftValue) < 0) state.leftValue = values[0] || "";
        if (values.indexOf(state.rightValue) < 0) state.rightValue = values[1] || values[0] || "";
        fillSelect($("st-diff-left"), values, state.leftValue);
        fillSelect($("st-diff-right"), values, state.rightValue);
        saveHash();
      });
  }

  var generation = 0;
  /** Reloads the timeline and the flamegraph (or diff) for the current state. */
  function refresh() {
    resolveRange();
    $("st-diff-row").hidden = state.mode !== "diff";
    $("st-legend").hidden = state.mode === "diff";
    $("st-diff-legend").hidden = state.mode !== "diff";
    $("st-mode-single").setAttribute("aria-selected", state.mode === "single");
    $("st-mode-diff").setAttribute("aria-selected", state.mode === "diff");
    $("st-diff-by").value = state.diffBy;
    $("st-diff-time").hidden = state.diffBy !== "time";
    $("st-diff-label").hidden = state.diffBy !== "label";
    if (state.mode === "diff" && state.diffBy === "time") {
      if (!state.left || !state.right) defaultDiffRanges();
      $("st-left-text").textContent = fmtRange(state.left);
      $("st-right-text").textContent = fmtRange(state.right);
    }
    saveHash();
    showError(null);
    if (!state.service || !state.type) {
      ui.timeline = null;
      drawTimeline();
      fg.setData({ names: ["total"], levels: [[0, 0, 0, 0]], numTicks: 0, maxSelf: 0 }, { format: "single" });
      $("st-top").innerHTML = "";
      ui.renders++;
      return Promise.resolve();
    }
    var my = ++generation;
    var q = query();
    var single = api("/pyroscope/render", { query: q, from: state.from, until: state.until });
    var diff = null;
    if (state.mode === "diff" && state.diffBy === "label") {
      diff = diffLabels().then(function () {
        if (!state.diffLabel) throw new Error("this service has no labels to compare; add labels to its series");
        return api("/pyroscope/render-diff", {
          leftQuery: query(state.diffLabel, state.leftValue),
          leftFrom: state.from,
          leftUntil: state.until,
          rightQuery: query(state.diffLabel, state.rightValue),
          rightFrom: state.from,
          rightUntil: state.until,
        });
      });
    } else if (state.mode === "diff") {
      diff = api("/pyroscope/render-diff", {
        leftQuery: q,
        leftFrom: state.left.from,
        leftUntil: state.left.until,
        rightQuery: q,
        rightFrom: state.right.from,
        rightUntil: state.right.until,
      });
    }
    return Promise.all([single, diff])
      .then(function (res) {
        if (my !== generation) return; // a newer refresh superseded this one
        var whole = res[0];
        var shown = res[1] || whole;
        ui.lastResponse = shown;
        ui.timeline = whole.timeline;
        drawTimeline();
        var md = shown.metadata || {};
        fg.setData(shown.flamebearer, {
          format: md.format || (state.mode === "diff" ? "double" : "single"),
          units: md.units,
          sampleRate: 0,
          defaultKind: looksPython(shown.flamebearer, md) ? "python" : "native",
          leftTicks: shown.leftTicks,
          rightTicks: shown.rightTicks,
          keepZoom: true,
        });
        $("st-reset").disabled = !fg.zoom;
        runSearch();
        renderSummary(shown);
        renderTable();
        ui.renders++;
      })
      .catch(function (err) {
        if (my === generation) showError(err);
      });
  }

  // ---------------------------------------------------------------- wiring
  $("st-range").addEventListener("change", function () {
    state.range = $("st-range").value;
    if (state.range === "custom") {
      state.from = fromLocalInput($("st-from").value) || state.from;
      state.until = fromLocalInput($("st-until").value) || state.until;
    }
    state.left = state.right = null;
    refresh();
  });
  ["st-from", "st-until"].forEach(function (id) {
    $(id).addEventListener("change", function () {
      var f = fromLocalInput($("st-from").value);
      var u = fromLocalInput($("st-until").value);
      if (!f || !u || u <= f) {
        showError(new Error("the range's start must be before its end"));
        return;
      }
      state.range = "custom";
      state.from = f;
      state.until = u;
      state.left = state.right = null;
      refresh();
    });
  });
  $("st-mode-single").addEventListener("click", function () {
    state.mode = "single";
    refresh();
  });
  $("st-mode-diff").addEventListener("click", function () {
    state.mode = "diff";
    refresh();
  });
  document.querySelectorAll("input[name=st-side]").forEach(function (r) {
    r.addEventListener("change", function () {
      state.side = r.value;
      drawTimeline();
    });
  });
  $("st-service-filter").addEventListener("input", renderServices);
  $("st-diff-by").addEventListener("change", function () {
    state.diffBy = $("st-diff-by").value;
    refresh();
  });
  $("st-diff-name").addEventListener("change", function () {
    state.diffLabel = $("st-diff-name").value;
    state.leftValue = state.rightValue = "";
    refresh();
  });
  $("st-diff-left").addEventListener("change", function () {
    state.leftValue = $("st-diff-left").value;
    refresh();
  });
  $("st-diff-right").addEventListener("change", function () {
    state.rightValue = $("st-diff-right").value;
    refresh();
  });
  $("st-filter-name").addEventListener("change", function () {
    loadLabelValues($("st-filter-name").value);
  });
  $("st-filter-value").addEventListener("input", function () {
    $("st-filter-add").disabled = !$("st-filter-name").value;
  });
  $("st-filter-add").addEventListener("click", addFilter);
  $("st-filter-value").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") addFilter();
  });
  $("st-refresh").addEventListener("click", function () {
    loadServices().then(refresh).catch(showError);
  });
  $("st-reset").addEventListener("click", function () {
    fg.reset();
  });
  var searchTimer = 0;
  $("st-search").addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 60);
  });
  document.addEventListener("keydown", function (ev) {
    var typing = /^(INPUT|SELECT|TEXTAREA)$/.test((document.activeElement || {}).tagName || "");
    if (ev.key === "Escape") fg.reset();
    else if (ev.key === "/" && !typing) {
      ev.preventDefault();
      $("st-search").focus();
    }
  });
  window.addEventListener("resize", drawTimeline);
  window.addEventListener("hashchange", function () {
    var before = location.hash;
    loadHash();
    renderServices();
    renderChips();
    refresh();
    if (location.hash !== before) saveHash();
  });
  bindTimeline();

  ui.selectService = selectService;
  ui.selectTime = selectTime;
  ui.refresh = refresh;
  ui.query = query;

  loadHash();
  resolveRange();
  renderChips();
  loadServices()
    .then(function () {
      loadLabelNames();
      return refresh();
    })
    .catch(function (err) {
      showError(err);
      ui.renders++;
    });
})();
