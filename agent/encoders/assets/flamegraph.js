/*
 * hostprof flamegraph renderer.
 *
 * One canvas renderer shared by the self-contained HTML file (hostprof.encoders.html inlines
 * this file) and the store's web UI (served as /ui/assets/flamegraph.js). It has no
 * dependencies and makes no network requests.
 *
 * Input is Pyroscope's "flamebearer" shape, so the store can hand over /pyroscope/render output
 * unchanged:
 *   {names: [string], levels: [[xOffsetDelta, total, self, nameIdx, ...], ...],
 *    numTicks, maxSelf}
 * with levels[0] holding the root. A "double" (diff) flamebearer has 7 numbers per node:
 *   [leftOffsetDelta, leftTotal, leftSelf, rightOffsetDelta, rightTotal, rightSelf, nameIdx].
 * Offsets are relative to the end of the previous node on the same level.
 *
 * Optional hostprof extensions, arrays parallel to `names`: `kinds` (0 python, 1 native,
 * 2 kernel, 3 synthetic), `files`, `lines`. Without them the kind, file and line are parsed
 * from the name using the folded-format conventions ("f (file.py:12)", "f [lib.so]", "f_[k]",
 * "<marker>").
 *
 * Usage:
 *   const fg = new HostprofFlamegraph(containerElement, {units: "samples"});
 *   fg.setData(flamebearer, {format: "single", units: "nanoseconds"});
 *   fg.search("work");  fg.zoomTo(level, index);  fg.reset();  fg.topFunctions(50);
 */
(function (global) {
  "use strict";

  var KIND_PYTHON = 0;
  var KIND_NATIVE = 1;
  var KIND_KERNEL = 2;
  var KIND_SYNTHETIC = 3;
  var KIND_NAMES = ["python", "native", "kernel", "synthetic"];

  var ROW_HEIGHT = 18;
  var FONT = "12px ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  // Frames narrower than this many CSS pixels are not drawn: at 100k stacks most frames are
  // sub-pixel, and drawing them costs time without showing anything.
  var MIN_WIDTH_PX = 0.35;
  var MIN_LABEL_PX = 22;

  var PY_RE = /^(.*) \(([^()]*):(\d+)\)$/;
  var PY_SDK_RE = /^(.+\.pyx?):(\d+) - (.+)$/;
  var NATIVE_RE = /^(.*) \[([^\[\]]+)\]$/;
  var PY_CODE_NAMES = /^<(module|genexpr|lambda|listcomp|dictcomp|setcomp)>$/;
  var PY_QUALNAME = /\.<(locals|lambda|genexpr|listcomp|dictcomp|setcomp)>/;

  /**
   * Splits a frame name written with the folded-format conventions. A bare name gets
   * `defaultKind` (native unless the caller knows better, e.g. a Python profiler's output).
   */
  function parseName(name, defaultKind) {
    var m;
    if (name.length > 4 && name.slice(-4) === "_[k]") {
      return { func: name.slice(0, -4), file: "", line: 0, kind: KIND_KERNEL };
    }
    // Code-object names CPython itself puts in angle brackets are Python frames, not markers.
    if (PY_CODE_NAMES.test(name)) {
      return { func: name, file: "", line: 0, kind: KIND_PYTHON };
    }
    // "other" is the store's bucket of subtrees merged away by maxNodes.
    if ((name.charAt(0) === "<" && name.charAt(name.length - 1) === ">") || name === "other") {
      return { func: name, file: "", line: 0, kind: KIND_SYNTHETIC };
    }
    if ((m = PY_RE.exec(name))) {
      return { func: m[1], file: m[2], line: +m[3], kind: KIND_PYTHON };
    }
    if ((m = PY_SDK_RE.exec(name))) {
      return { func: m[3], file: m[1], line: +m[2], kind: KIND_PYTHON };
    }
    if ((m = NATIVE_RE.exec(name))) {
      return { func: m[1], file: m[2], line: 0, kind: KIND_NATIVE };
    }
    if (/\.py:\d+$/.test(name) || /\.py$/.test(name) || PY_QUALNAME.test(name)) {
      return { func: name, file: "", line: 0, kind: KIND_PYTHON };
    }
    return { func: name, file: "", line: 0, kind: defaultKind === undefined ? KIND_NATIVE : defaultKind };
  }

  /** A stable 32-bit hash of a string (FNV-1a), for per-function colour jitter. */
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return (h >>> 0) / 4294967296;
  }

  /** The fill colour of a frame of `kind` named `func` (stable across renders). */
  function kindColour(kind, func) {
    var v = hash(func);
    var w = hash(func + "#");
    switch (kind) {
      case KIND_PYTHON: // warm: amber to orange
        return "hsl(" + (26 + 22 * v).toFixed(1) + ",88%," + (60 + 8 * w).toFixed(1) + "%)";
      case KIND_NATIVE: // red to salmon
        return "hsl(" + (2 + 12 * v).toFixed(1) + ",72%," + (63 + 8 * w).toFixed(1) + "%)";
      case KIND_KERNEL: // blue
        return "hsl(" + (198 + 18 * v).toFixed(1) + ",62%," + (62 + 8 * w).toFixed(1) + "%)";
      default: // synthetic markers: muted violet
        return "hsl(" + (262 + 16 * v).toFixed(1) + ",30%," + (70 + 6 * w).toFixed(1) + "%)";
    }
  }

  /** Red for growth, green for shrinkage, by the change in share of the whole (diff view). */
  function diffColour(leftShare, rightShare) {
    var d = rightShare - leftShare;
    var base = Math.max(leftShare, rightShare, 1e-12);
    var rel = Math.max(-1, Math.min(1, d / base));
    var strength = Math.min(1, Math.abs(rel) * 1.2);
    if (Math.abs(rel) < 0.02) return "hsl(220,10%,82%)";
    var light = (86 - 36 * strength).toFixed(1);
    return rel > 0 ? "hsl(2,78%," + light + "%)" : "hsl(130,55%," + light + "%)";
  }

  var DIMMED = "hsl(220,12%,90%)";
  var DIMMED_TEXT = "#9aa0a8";

  // ------------------------------------------------------------------ value formatting
  function groupDigits(n) {
    return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function formatDuration(ns) {
    var a = Math.abs(ns);
    if (a >= 3600e9) return (ns / 3600e9).toFixed(2) + " h";
    if (a >= 60e9) return (ns / 60e9).toFixed(2) + " min";
    if (a >= 1e9) return (ns / 1e9).toFixed(2) + " s";
    if (a >= 1e6) return (ns / 1e6).toFixed(2) + " ms";
    if (a >= 1e3) return (ns / 1e3).toFixed(2) + " µs";
    return groupDigits(ns) + " ns";
  }

  function formatBytes(b) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    var v = b;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i ? v.toFixed(2) : groupDigits(v)) + " " + units[i];
  }

  /** Formats a value in `units` ("nanoseconds", "bytes", "samples", "count", ...). */
  function formatValue(v, units, sampleRate) {
    switch (units) {
      case "nanoseconds":
        return formatDuration(v);
      case "microseconds":
        return formatDuration(v * 1e3);
      case "milliseconds":
        return formatDuration(v * 1e6);
      case "seconds":
        return formatDuration(v * 1e9);
      case "bytes":
        return formatBytes(v);
      case "samples":
        if (sampleRate) return groupDigits(v) + " samples (" + formatDuration((v / sampleRate) * 1e9) + ")";
        return groupDigits(v) + " samples";
      case "count":
      case "":
      case undefined:
      case null:
        return groupDigits(v);
      default:
        return groupDigits(v) + " " + units;
    }
  }

  function pct(part, whole) {
    if (!whole) return "0%";
    var p = (100 * part) / whole;
    if (p >= 10) return p.toFixed(1) + "%";
    if (p >= 0.01) return p.toFixed(2) + "%";
    return p > 0 ? "<0.01%" : "0%";
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // ------------------------------------------------------------------ data model
  /**
   * Decodes a flamebearer into per-level typed arrays with absolute positions and parents.
   * Positions are in ticks; for a diff they are left + right ticks, as Pyroscope lays it out.
   */
  function decode(fb, format) {
    var double = format === "double";
    var step = double ? 7 : 4;
    var nameAt = double ? 6 : 3;
    var levels = [];
    var nodes = 0;
    for (var d = 0; d < fb.levels.length; d++) {
      var src = fb.levels[d];
      var n = Math.floor(src.length / step);
      var L = {
        n: n,
        start: new Float64Array(n),
        total: new Float64Array(n),
        self: new Float64Array(n),
        name: new Int32Array(n),
        parent: new Int32Array(n),
      };
      if (double) {
        L.lTotal = new Float64Array(n);
        L.lSelf = new Float64Array(n);
        L.rTotal = new Float64Array(n);
        L.rSelf = new Float64Array(n);
      }
      var prevEnd = 0;
      var lPrev = 0;
      var rPrev = 0;
      for (var j = 0, k = 0; j < n; j++, k += step) {
        if (double) {
          var ls = lPrev + src[k];
          var rs = rPrev + src[k + 3];
          lPrev = ls + src[k + 1];
          rPrev = rs + src[k + 4];
          L.lTotal[j] = src[k + 1];
          L.lSelf[j] = src[k + 2];
          L.rTotal[j] = src[k + 4];
          L.rSelf[j] = src[k + 5];
          L.start[j] = ls + rs;
          L.total[j] = src[k + 1] + src[k + 4];
          L.self[j] = src[k + 2] + src[k + 5];
        } else {
          L.start[j] = prevEnd + src[k];
          L.total[j] = src[k + 1];
          L.self[j] = src[k + 2];
          prevEnd = L.start[j] + L.total[j];
        }
        L.name[j] = src[k + nameAt];
      }
      levels.push(L);
      nodes += n;
    }
    // Parents: children lie inside their parent's span and both levels are sorted by start,
    // so one merge walk per level finds them.
    for (d = 1; d < levels.length; d++) {
      var P = levels[d - 1];
      var C = levels[d];
      var p = 0;
      for (j = 0; j < C.n; j++) {
        var s = C.start[j];
        while (p < P.n - 1 && P.start[p] + P.total[p] <= s) p++;
        C.parent[j] = p;
      }
    }
    if (levels.length) levels[0].parent.fill(-1);
    return { levels: levels, nodes: nodes };
  }

  /** Per-name display data: function, file, line, kind and colour. */
  function nameInfo(fb, defaultKind) {
    var out = new Array(fb.names.length);
    for (var i = 0; i < fb.names.length; i++) {
      var name = String(fb.names[i]);
      var info;
      if (fb.kinds) {
        info = {
          func: name,
          file: fb.files ? fb.files[i] || "" : "",
          line: fb.lines ? fb.lines[i] || 0 : 0,
          kind: fb.kinds[i],
        };
      } else {
        info = parseName(name, defaultKind);
      }
      info.full = name;
      info.colour = kindColour(info.kind, info.func);
      info.where = info.file ? info.file + (info.line ? ":" + info.line : "") : "";
      info.search = (info.func + " " + info.where).toLowerCase();
      out[i] = info;
    }
    return out;
  }

  // ------------------------------------------------------------------ the renderer
  /**
   * An interactive flamegraph in `container`.
   *
   * Options: rowHeight (px), inverted (true: root at the top, "icicle"; false: root at the
   * bottom), onZoom(node|null), onHover(node|null), units, sampleRate.
   */
  function HostprofFlamegraph(container, options) {
    this.options = options || {};
    this.rowHeight = this.options.rowHeight || ROW_HEIGHT;
    this.inverted = this.options.inverted !== undefined ? !!this.options.inverted : true;
    this.container = container;
    container.classList.add("hfg");
    this.wrap = document.createElement("div");
    this.wrap.className = "hfg-wrap";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "hfg-canvas";
    this.overlay = document.createElement("canvas");
    this.overlay.className = "hfg-overlay";
    this.overlay.setAttribute("role", "img");
    this.overlay.setAttribute("aria-label", "Flamegraph: hover a frame for details, click to zoom");
    this.tooltip = document.createElement("div");
    this.tooltip.className = "hfg-tooltip";
    this.tooltip.hidden = true;
    this.empty = document.createElement("div");
    this.empty.className = "hfg-empty";
    this.empty.textContent = "No samples to show.";
    this.empty.hidden = true;
    this.wrap.appendChild(this.canvas);
    this.wrap.appendChild(this.overlay);
    container.appendChild(this.wrap);
    container.appendChild(this.empty);
    document.body.appendChild(this.tooltip);
    this.fb = null;
    this.model = null;
    this.info = [];
    this.zoom = null; // {level, index, start, end}
    this.query = "";
    this.matched = null; // per level Uint8Array: 1 = matches the search
    this.hover = null;
    this.drawn = []; // frames drawn in the last render, for tests and hit-testing
    this.lastRenderMs = 0;
    this._bind();
    var self = this;
    if (global.ResizeObserver) {
      this._ro = new ResizeObserver(function () {
        if (self.model && self.canvas.clientWidth !== self._width) self.render();
      });
      this._ro.observe(this.wrap);
    } else {
      global.addEventListener("resize", function () {
        self.render();
      });
    }
  }

  /**
   * Shows a new flamebearer. With meta.keepZoom, a zoomed frame stays zoomed when the same
   * call path exists in the new data (another thread, sample type or time range).
   */
  HostprofFlamegraph.prototype.setData = function (fb, meta) {
    meta = meta || {};
    var path = meta.keepZoom ? this.zoomPath() : null;
    var hadZoom = !!this.zoom;
    this.fb = fb;
    this.format = meta.format || fb.format || "single";
    this.units = meta.units || this.options.units || "";
    this.sampleRate = meta.sampleRate || this.options.sampleRate || 0;
    this.leftTicks = meta.leftTicks || fb.leftTicks || 0;
    this.rightTicks = meta.rightTicks || fb.rightTicks || 0;
    this.model = decode(fb, this.format);
    var dk = typeof meta.defaultKind === "string" ? KIND_NAMES.indexOf(meta.defaultKind) : meta.defaultKind;
    this.info = nameInfo(fb, dk >= 0 ? dk : undefined);
    this.numTicks = fb.numTicks || (this.model.levels.length ? this.model.levels[0].total[0] || 0 : 0);
    this.zoom = null;
    this.hover = null;
    this.matched = null;
    this._depthShown = 0;
    if (this.query) this._match();
    if (path && this._zoomToPath(path)) return;
    this.render();
    if (hadZoom && this.options.onZoom) this.options.onZoom(null);
  };

  /** The zoomed frame's call path from the root's child down, as "function\u0000file:line" keys. */
  HostprofFlamegraph.prototype.zoomPath = function () {
    if (!this.zoom || !this.model) return null;
    var levels = this.model.levels;
    var path = [];
    for (var d = this.zoom.level, j = this.zoom.index; d >= 1; d--) {
      var info = this.info[levels[d].name[j]];
      path.push(info.func + "\u0000" + info.where);
      j = levels[d].parent[j];
    }
    return path.reverse();
  };

  /** Zooms to the frame at the end of `path` (see zoomPath); false when it is not there. */
  HostprofFlamegraph.prototype._zoomToPath = function (path) {
    var levels = this.model.levels;
    var idx = 0;
    for (var d = 1; d <= path.length; d++) {
      var L = levels[d];
      if (!L) return false;
      var found = -1;
      for (var j = 0; j < L.n; j++) {
        if (L.parent[j] !== idx || L.total[j] <= 0) continue;
        var info = this.info[L.name[j]];
        if (info.func + "\u0000" + info.where === path[d - 1]) {
          found = j;
          break;
        }
      }
      if (found < 0) return false;
      idx = found;
    }
    this.zoomTo(path.length, idx);
    return true;
  };

  /** The node at (level, index) as a plain object. */
  HostprofFlamegraph.prototype.node = function (level, index) {
    var L = this.model.levels[level];
    var info = this.info[L.name[index]];
    var n = {
      level: level,
      index: index,
      name: info.func,
      fullName: info.full,
      file: info.file,
      line: info.line,
      kind: KIND_NAMES[info.kind] || "native",
      start: L.start[index],
      total: L.total[index],
      self: L.self[index],
    };
    if (L.lTotal) {
      n.leftTotal = L.lTotal[index];
      n.leftSelf = L.lSelf[index];
      n.rightTotal = L.rTotal[index];
      n.rightSelf = L.rSelf[index];
    }
    return n;
  };

  HostprofFlamegraph.prototype.zoomTo = function (level, index) {
    var L = this.model.levels[level];
    if (!L || index < 0 || index >= L.n) return;
    if (level === 0) return this.reset();
    this.zoom = { level: level, index: index, start: L.start[index], end: L.start[index] + L.total[index] };
    this.render();
    if (this.options.onZoom) this.options.onZoom(this.node(level, index));
  };

  HostprofFlamegraph.prototype.reset = function () {
    this.zoom = null;
    this.render();
    if (this.options.onZoom) this.options.onZoom(null);
  };

  HostprofFlamegraph.prototype.setInverted = function (inverted) {
    this.inverted = !!inverted;
    this.render();
  };

  /**
   * Highlights frames whose function or file contains `query` (case-insensitive; /regex/ for
   * a regular expression). Returns {frames, ticks, percent}: matched ticks count each sample
   * once, even when a matched function is on the stack several times.
   */
  HostprofFlamegraph.prototype.search = function (query) {
    this.query = query || "";
    var result = this._match();
    this.render();
    return result;
  };

  HostprofFlamegraph.prototype._match = function () {
    if (!this.model || !this.query) {
      this.matched = null;
      this.searchResult = { frames: 0, ticks: 0, percent: 0 };
      return this.searchResult;
    }
    var test;
    var q = this.query;
    var rx = /^\/(.+)\/([a-z]*)$/.exec(q);
    if (rx) {
      try {
        var re = new RegExp(rx[1], rx[2].indexOf("i") >= 0 ? rx[2] : rx[2] + "i");
        test = function (info) {
          return re.test(info.func) || re.test(info.where);
        };
      } catch (e) {
        test = function () {
          return false;
        };
      }
    } else {
      var lq = q.toLowerCase();
      test = function (info) {
        return info.search.indexOf(lq) >= 0;
      };
    }
    var nameHit = new Uint8Array(this.info.length);
    for (var i = 0; i < this.info.length; i++) nameHit[i] = test(this.info[i]) ? 1 : 0;
    var levels = this.model.levels;
    var matched = [];
    var covered = [];
    var frames = 0;
    var ticks = 0;
    for (var d = 0; d < levels.length; d++) {
      var L = levels[d];
      var m = new Uint8Array(L.n);
      var c = new Uint8Array(L.n);
      for (var j = 0; j < L.n; j++) {
        m[j] = nameHit[L.name[j]];
        var parentCovered = d > 0 ? covered[d - 1][L.parent[j]] : 0;
        if (m[j]) {
          frames++;
          if (!parentCovered) ticks += L.total[j];
        }
        c[j] = m[j] | parentCovered;
      }
      matched.push(m);
      covered.push(c);
    }
    this.matched = matched;
    this.searchResult = {
      frames: frames,
      ticks: ticks,
      percent: this.numTicks ? (100 * ticks) / this.numTicks : 0,
    };
    return this.searchResult;
  };

  /**
   * Functions by self and total value (total counts a sample once per function even under
   * recursion). Rows: {name, file, kind, self, total} (diff: also left/right self and total).
   */
  HostprofFlamegraph.prototype.topFunctions = function (limit) {
    if (!this.model) return [];
    var levels = this.model.levels;
    var double = this.format === "double";
    // Functions are keyed by name and location; several names may share a key.
    var keyOf = new Int32Array(this.info.length);
    var firstName = [];
    var keyIds = new Map();
    for (var i = 0; i < this.info.length; i++) {
      var k = this.info[i].func + "\u0000" + this.info[i].where;
      var id = keyIds.get(k);
      if (id === undefined) {
        id = firstName.length;
        keyIds.set(k, id);
        firstName.push(i);
      }
      keyOf[i] = id;
    }
    var acc = accumulateByFunction(levels, keyOf, firstName.length, double);
    var rows = [];
    for (var key = 0; key < firstName.length; key++) {
      if (!acc.seen[key]) continue;
      var info = this.info[firstName[key]];
      var r = { name: info.func, file: info.where, kind: KIND_NAMES[info.kind], self: acc.self[key], total: acc.total[key] };
      if (double) {
        r.leftSelf = acc.lSelf[key];
        r.rightSelf = acc.rSelf[key];
        r.leftTotal = acc.lTotal[key];
        r.rightTotal = acc.rTotal[key];
      }
      rows.push(r);
    }
    rows.sort(function (a, b) {
      return b.self - a.self || b.total - a.total;
    });
    return limit ? rows.slice(0, limit) : rows;
  };

  /**
   * Sums self and total per function key over all frames below the root. A function's total
   * counts each sample once even under recursion: a depth-first walk keeps how often each
   * function is on the current path, and only its outermost frame adds to the total.
   * (A plain function over typed arrays, so V8 optimises the hot loop.)
   */
  function accumulateByFunction(levels, keyOf, nKeys, double) {
    var out = {
      seen: new Uint8Array(nKeys),
      self: new Float64Array(nKeys),
      total: new Float64Array(nKeys),
    };
    if (double) {
      out.lSelf = new Float64Array(nKeys);
      out.rSelf = new Float64Array(nKeys);
      out.lTotal = new Float64Array(nKeys);
      out.rTotal = new Float64Array(nKeys);
    }
    if (levels.length < 2) return out;
    // Children of a node are a contiguous run on the next level (both sorted by start).
    var childStart = [];
    for (var d = 0; d < levels.length; d++) {
      var cs = new Int32Array(levels[d].n + 1);
      if (d + 1 < levels.length) {
        var C = levels[d + 1];
        for (var c = 0; c < C.n; c++) cs[C.parent[c] + 1]++;
        for (var j = 0; j < levels[d].n; j++) cs[j + 1] += cs[j];
      }
      childStart.push(cs);
    }
    var onPath = new Int32Array(nKeys);
    var stack = [];
    for (var r0 = childStart[0][1] - 1; r0 >= 0; r0--) stack.push(1, r0, 0);
    while (stack.length) {
      var phase = stack.pop();
      var idx = stack.pop();
      var lvl = stack.pop();
      var L = levels[lvl];
      var key = keyOf[L.name[idx]];
      if (phase === 1) {
        onPath[key]--;
        continue;
      }
      out.seen[key] = 1;
      out.self[key] += L.self[idx];
      if (double) {
        out.lSelf[key] += L.lSelf[idx];
        out.rSelf[key] += L.rSelf[idx];
      }
      if (onPath[key] === 0) {
        out.total[key] += L.total[idx];
        if (double) {
          out.lTotal[key] += L.lTotal[idx];
          out.rTotal[key] += L.rTotal[idx];
        }
      }
      onPath[key]++;
      stack.push(lvl, idx, 1);
      if (lvl + 1 < levels.length) {
        var cs2 = childStart[lvl];
        for (var ch = cs2[idx + 1] - 1; ch >= cs2[idx]; ch--) stack.push(lvl + 1, ch, 0);
      }
    }
    return out;
  }

  HostprofFlamegraph.prototype.format_ = function (v) {
    return formatValue(v, this.units, this.sampleRate);
  };

  // ------------------------------------------------------------------ drawing
  HostprofFlamegraph.prototype._layout = function () {
    var width = this.wrap.clientWidth || this.container.clientWidth || 800;
    var depth = this._rows();
    var height = Math.max(1, depth) * this.rowHeight;
    var dpr = global.devicePixelRatio || 1;
    var canvases = [this.canvas, this.overlay];
    for (var i = 0; i < canvases.length; i++) {
      var c = canvases[i];
      if (c.width !== Math.round(width * dpr) || c.height !== Math.round(height * dpr)) {
        c.width = Math.round(width * dpr);
        c.height = Math.round(height * dpr);
      }
      c.style.width = width + "px";
      c.style.height = height + "px";
    }
    this.wrap.style.height = height + "px";
    this._width = width;
    this._height = height;
    this._dpr = dpr;
  };

  /**
   * Rows laid out: down to the deepest level with a frame wide enough to draw in this view,
   * so sub-pixel depths of a huge profile do not leave an empty band.
   */
  HostprofFlamegraph.prototype._rows = function () {
    if (!this.model) return 0;
    return Math.min(this._depthShown || this.model.levels.length, this.model.levels.length);
  };

  HostprofFlamegraph.prototype._y = function (level) {
    var depth = this._rows();
    return this.inverted ? level * this.rowHeight : (depth - 1 - level) * this.rowHeight;
  };

  /** First index on level L whose end lies after `x` (binary search over sorted starts). */
  function firstAfter(L, x) {
    var lo = 0;
    var hi = L.n;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (L.start[mid] + L.total[mid] <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The number of levels with a frame wide enough to draw in the current view. A child is
   * never wider than its parent, so the first level without one ends the search.
   */
  HostprofFlamegraph.prototype._visibleDepth = function () {
    var levels = this.model.levels;
    var z = this.zoom;
    var viewStart = z ? z.start : 0;
    var viewEnd = z ? z.end : levels[0].start[0] + levels[0].total[0];
    var minTicks = (MIN_WIDTH_PX * (viewEnd - viewStart)) / (this.wrap.clientWidth || 800);
    for (var d = z ? z.level : 1; d < levels.length; d++) {
      var L = levels[d];
      var found = false;
      for (var j = firstAfter(L, viewStart); j < L.n && L.start[j] < viewEnd; j++) {
        if (L.total[j] >= minTicks) {
          found = true;
          break;
        }
      }
      if (!found) return d;
    }
    return levels.length;
  };

  HostprofFlamegraph.prototype.render = function () {
    if (!this.model) return;
    var t0 = global.performance ? performance.now() : Date.now();
    var empty = !this.numTicks || !this.model.levels.length;
    this.empty.hidden = !empty;
    this.wrap.hidden = empty;
    this.drawn = [];
    this.hover = null; // frames move on every render; the pointer picks again on its next move
    if (empty) return;
    this._depthShown = Math.max(1, this._visibleDepth());
    this._layout();
    var ctx = this.canvas.getContext("2d");
    var dpr = this._dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this._width, this._height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    if (!this._charWidth) this._charWidth = ctx.measureText("abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJ").width / 36;
    var levels = this.model.levels;
    var z = this.zoom;
    var viewStart = z ? z.start : 0;
    var viewEnd = z ? z.end : levels[0].start[0] + levels[0].total[0];
    var span = viewEnd - viewStart || 1;
    var scale = this._width / span;
    var rowH = this.rowHeight;
    var double = this.format === "double";
    var leftTicks = this.leftTicks || 1;
    var rightTicks = this.rightTicks || 1;
    var matched = this.matched;
    var drawn = this.drawn;
    var depthShown = this._depthShown;
    for (var d = 0; d < depthShown; d++) {
      var L = levels[d];
      var y = this._y(d);
      var j = 0;
      var jEnd = L.n;
      var ancestorsOnly = z && d < z.level;
      if (z) {
        // Only the part of the level inside the view; for levels above the zoomed frame that
        // is its one ancestor.
        j = firstAfter(L, viewStart);
        if (ancestorsOnly) jEnd = Math.min(L.n, j + 1);
      }
      for (; j < jEnd; j++) {
        var s = L.start[j];
        var t = L.total[j];
        if (t <= 0) continue;
        var x;
        var w;
        if (ancestorsOnly) {
          // Ancestors of the zoomed frame span the whole width.
          if (s > viewStart || s + t < viewEnd) continue;
          x = 0;
          w = this._width;
        } else {
          if (s >= viewEnd) break;
          x = (s - viewStart) * scale;
          w = t * scale;
          if (w < MIN_WIDTH_PX) continue;
        }
        var info = this.info[L.name[j]];
        var fill;
        var dim = matched && !matched[d][j];
        if (dim) fill = DIMMED;
        else if (double) fill = diffColour(L.lTotal[j] / leftTicks, L.rTotal[j] / rightTicks);
        else fill = d === 0 ? "hsl(220,10%,78%)" : info.colour;
        // Ancestors of a zoomed frame are context, not content: draw them faded.
        ctx.globalAlpha = ancestorsOnly ? 0.55 : 1;
        ctx.fillStyle = fill;
        var gap = w > 3 ? 0.5 : 0;
        ctx.fillRect(x + gap, y + 0.5, Math.max(w - 2 * gap, MIN_WIDTH_PX), rowH - 1);
        if (w >= MIN_LABEL_PX) {
          var label = d === 0 ? this._rootLabel() : info.func;
          var maxChars = Math.floor((w - 8) / this._charWidth);
          if (maxChars >= 2) {
            if (label.length > maxChars) label = label.slice(0, maxChars - 1) + "\u2026";
            // The average glyph width is a guess: trim until the label really fits.
            var room = w - 7;
            while (label.length > 1 && ctx.measureText(label).width > room) {
              label = label.length > 2 ? label.slice(0, -2) + "\u2026" : "";
            }
            ctx.fillStyle = dim ? DIMMED_TEXT : "#1d1f24";
            ctx.fillText(label, x + 4, y + rowH / 2 + 0.5);
          }
        }
        drawn.push({ level: d, index: j, x: x, y: y, w: w, h: rowH, name: info.func, matched: !!(matched && !dim) });
      }
    }
    ctx.globalAlpha = 1;
    this._drawOverlay();
    var t1 = global.performance ? performance.now() : Date.now();
    this.lastRenderMs = t1 - t0;
  };

  HostprofFlamegraph.prototype._rootLabel = function () {
    var total = this.format_(this.numTicks);
    if (this.format === "double") {
      return "all: " + this.format_(this.leftTicks) + " \u2192 " + this.format_(this.rightTicks);
    }
    return "all (" + total + ")";
  };

  HostprofFlamegraph.prototype._drawOverlay = function () {
    var ctx = this.overlay.getContext("2d");
    ctx.setTransform(this._dpr, 0, 0, this._dpr, 0, 0);
    ctx.clearRect(0, 0, this._width, this._height);
    var h = this.hover;
    if (!h) return;
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(h.x + 0.75, h.y + 1, Math.max(h.w - 1.5, 1), h.h - 2);
  };

  /** The drawn frame under canvas coordinates (CSS px), or null. */
  HostprofFlamegraph.prototype.frameAt = function (px, py) {
    if (!this.model) return null;
    var depth = this._rows();
    var row = Math.floor(py / this.rowHeight);
    var level = this.inverted ? row : depth - 1 - row;
    if (level < 0 || level >= depth) return null;
    // Frames are pushed level by level and left to right: binary search the level's slice.
    var lo = 0;
    var hi = this.drawn.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      var f = this.drawn[mid];
      if (f.level < level || (f.level === level && f.x + f.w <= px)) lo = mid + 1;
      else hi = mid;
    }
    var hit = this.drawn[lo];
    if (hit && hit.level === level && hit.x <= px && px < hit.x + hit.w) return hit;
    return null;
  };

  HostprofFlamegraph.prototype._bind = function () {
    var self = this;
    this.overlay.addEventListener("mousemove", function (ev) {
      var r = self.overlay.getBoundingClientRect();
      var hit = self.frameAt(ev.clientX - r.left, ev.clientY - r.top);
      if (hit !== self.hover) {
        self.hover = hit;
        self._drawOverlay();
        if (self.options.onHover) self.options.onHover(hit ? self.node(hit.level, hit.index) : null);
      }
      self.overlay.style.cursor = hit ? "pointer" : "default";
      if (hit) self._showTooltip(hit, ev.clientX, ev.clientY);
      else self.tooltip.hidden = true;
    });
    this.overlay.addEventListener("mouseleave", function () {
      self.hover = null;
      self.tooltip.hidden = true;
      self._drawOverlay();
    });
    this.overlay.addEventListener("click", function (ev) {
      var r = self.overlay.getBoundingClientRect();
      var hit = self.frameAt(ev.clientX - r.left, ev.clientY - r.top);
      if (!hit) return;
      self.tooltip.hidden = true;
      if (self.zoom && hit.level === self.zoom.level && hit.index === self.zoom.index) return;
      if (hit.level === 0) self.reset();
      else self.zoomTo(hit.level, hit.index);
    });
  };

  HostprofFlamegraph.prototype._showTooltip = function (hit, cx, cy) {
    var n = this.node(hit.level, hit.index);
    var info = this.info[this.model.levels[hit.level].name[hit.index]];
    var html = "<div class='hfg-tt-name'>" + escapeHtml(hit.level === 0 ? "all" : n.name) + "</div>";
    var meta = [];
    if (info.where) meta.push(escapeHtml(info.where));
    if (hit.level > 0) meta.push("<span class='hfg-kind hfg-kind-" + n.kind + "'>" + n.kind + "</span>");
    if (meta.length) html += "<div class='hfg-tt-where'>" + meta.join(" · ") + "</div>";
    html += "<table>";
    if (this.format === "double") {
      var lp = this.leftTicks ? n.leftTotal / this.leftTicks : 0;
      var rp = this.rightTicks ? n.rightTotal / this.rightTicks : 0;
      html += "<tr><th>baseline</th><td>" + this.format_(n.leftTotal) + "</td><td>" + pct(n.leftTotal, this.leftTicks) + "</td></tr>";
      html += "<tr><th>comparison</th><td>" + this.format_(n.rightTotal) + "</td><td>" + pct(n.rightTotal, this.rightTicks) + "</td></tr>";
      var dp = (rp - lp) * 100;
      html += "<tr><th>change</th><td colspan=2 class='" + (dp > 0 ? "hfg-up" : "hfg-down") + "'>" +
        (dp > 0 ? "+" : "") + dp.toFixed(2) + " pp of total</td></tr>";
    } else {
      html += "<tr><th>total</th><td>" + this.format_(n.total) + "</td><td>" + pct(n.total, this.numTicks) + "</td></tr>";
      html += "<tr><th>self</th><td>" + this.format_(n.self) + "</td><td>" + pct(n.self, this.numTicks) + "</td></tr>";
      if (this.zoom && hit.level >= this.zoom.level) {
        html += "<tr><th>of zoomed</th><td></td><td>" + pct(n.total, this.zoom.end - this.zoom.start) + "</td></tr>";
      }
    }
    html += "</table>";
    this.tooltip.innerHTML = html;
    this.tooltip.hidden = false;
    var tw = this.tooltip.offsetWidth;
    var th = this.tooltip.offsetHeight;
    var vx = global.innerWidth;
    var vy = global.innerHeight;
    var left = cx + 14;
    var top = cy + 16;
    if (left + tw > vx - 4) left = Math.max(4, cx - tw - 14);
    if (top + th > vy - 4) top = Math.max(4, cy - th - 12);
    this.tooltip.style.left = left + global.scrollX + "px";
    this.tooltip.style.top = top + global.scrollY + "px";
  };

  // ------------------------------------------------------------------ top-functions table
  /**
   * Fills `table` (a <table>) with the top functions of `fg`. `onPick(row)` runs when a row
   * is clicked. Columns sort on header click.
   */
  function renderTopTable(table, fg, options) {
    options = options || {};
    var limit = options.limit || 200;
    var rows = fg.topFunctions();
    var double = fg.format === "double";
    var cols = double
      ? [["name", "Function"], ["leftSelf", "Self (baseline)"], ["rightSelf", "Self (comparison)"], ["diff", "Δ self"], ["rightTotal", "Total (comparison)"]]
      : [["name", "Function"], ["self", "Self"], ["selfPct", "Self %"], ["total", "Total"], ["totalPct", "Total %"]];
    // Keep the user's sort column while it exists in this mode (single and diff differ).
    var sortKey = table.dataset.sortKey;
    var sortKeys = cols.map(function (c) {
      return c[0];
    });
    if (sortKeys.indexOf(sortKey) < 0) sortKey = double ? "diff" : "self";
    rows.forEach(function (r) {
      r.selfPct = r.self;
      r.totalPct = r.total;
      if (double) {
        r.diff = (fg.rightTicks ? r.rightSelf / fg.rightTicks : 0) - (fg.leftTicks ? r.leftSelf / fg.leftTicks : 0);
      }
    });
    rows.sort(function (a, b) {
      if (sortKey === "name") return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
      if (sortKey === "diff") return Math.abs(b.diff) - Math.abs(a.diff);
      return b[sortKey] - a[sortKey];
    });
    var html = "<thead><tr>";
    cols.forEach(function (c) {
      html += "<th data-key='" + c[0] + "' class='" + (c[0] === sortKey ? "hfg-sorted" : "") + "'>" + c[1] + "</th>";
    });
    html += "</tr></thead><tbody>";
    rows.slice(0, limit).forEach(function (r, i) {
      html += "<tr data-i='" + i + "'><td class='hfg-fn'><span class='hfg-swatch hfg-kind-" + r.kind + "'></span>" +
        escapeHtml(r.name) + (r.file ? " <span class='hfg-file'>" + escapeHtml(r.file) + "</span>" : "") + "</td>";
      if (double) {
        var up = r.diff > 0;
        html += "<td>" + fg.format_(r.leftSelf) + "</td><td>" + fg.format_(r.rightSelf) + "</td>" +
          "<td class='" + (Math.abs(r.diff) < 1e-9 ? "" : up ? "hfg-up" : "hfg-down") + "'>" + (up ? "+" : "") + (r.diff * 100).toFixed(2) + " pp</td>" +
          "<td>" + fg.format_(r.rightTotal) + "</td>";
      } else {
        html += "<td>" + fg.format_(r.self) + "</td><td>" + pct(r.self, fg.numTicks) +
          "</td><td>" + fg.format_(r.total) + "</td><td>" + pct(r.total, fg.numTicks) + "</td>";
      }
      html += "</tr>";
    });
    html += "</tbody>";
    table.innerHTML = html;
    table.classList.add("hfg-table");
    var shown = rows.slice(0, limit);
    table.querySelectorAll("th").forEach(function (th) {
      th.addEventListener("click", function () {
        table.dataset.sortKey = th.dataset.key;
        renderTopTable(table, fg, options);
      });
    });
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      tr.addEventListener("click", function () {
        if (options.onPick) options.onPick(shown[+tr.dataset.i]);
      });
    });
    return rows.length;
  }

  HostprofFlamegraph.parseName = parseName;
  HostprofFlamegraph.formatValue = formatValue;
  HostprofFlamegraph.percent = pct;
  HostprofFlamegraph.escapeHtml = escapeHtml;
  HostprofFlamegraph.kindColour = kindColour;
  HostprofFlamegraph.renderTopTable = renderTopTable;
  HostprofFlamegraph.KIND_NAMES = KIND_NAMES;
  global.HostprofFlamegraph = HostprofFlamegraph;
})(typeof window !== "undefined" ? window : this);
