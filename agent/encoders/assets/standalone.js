/*
 * The page logic of the self-contained HTML flamegraph (hostprof.encoders.html).
 *
 * The embedded document (script#hostprof-data) holds a trie of the profile's distinct stacks,
 * not its samples:
 *   frames:  {names, file (index into files), files, line, kind}  frames sorted by name
 *   nodes:   {parentDelta, frame}   trie nodes 1..N (node 0 is the root); parents never
 *            decrease, so they are delta-encoded; siblings are contiguous and sorted by name
 *   rows:    {node, labels, values[type][row]}   one row per distinct (stack, label set)
 *   labelSets: [{name: value}]
 * This script sums the rows selected by the sample type and thread pickers into the trie,
 * writes a flamebearer and hands it to HostprofFlamegraph.
 */
(function () {
  "use strict";

  var doc = JSON.parse(document.getElementById("hostprof-data").textContent);
  var $ = function (id) {
    return document.getElementById(id);
  };

  // ---------------------------------------------------------------- decode the trie
  var nNodes = doc.nodes.frame.length + 1;
  var parent = new Int32Array(nNodes);
  var frameOf = new Int32Array(nNodes);
  parent[0] = -1;
  frameOf[0] = -1;
  var p = 0;
  for (var i = 1; i < nNodes; i++) {
    p += doc.nodes.parentDelta[i - 1];
    parent[i] = p;
    frameOf[i] = doc.nodes.frame[i - 1];
  }
  // Children of a node are one contiguous run, because parents never decrease.
  var firstChild = new Int32Array(nNodes).fill(0);
  var childCount = new Int32Array(nNodes);
  for (i = nNodes - 1; i >= 1; i--) {
    firstChild[parent[i]] = i;
    childCount[parent[i]]++;
  }

  var nFrames = doc.frames.names.length;
  var rows = doc.rows;
  var nRows = rows.node.length;
  var types = doc.sampleTypes;

  // Thread of each label set. Threads are keyed by thread_id when there is one, because the
  // same thread can carry different names (the Python thread name from the sampling core, the
  // kernel's comm from eBPF); it is shown under the name with the most samples.
  var threadKeys = [];
  var threadIndex = {};
  var rowThread = new Int32Array(nRows);
  var nameWeight = [];
  var setThread = doc.labelSets.map(function (ls) {
    var tid = ls.thread_id || "";
    var key = tid ? "tid:" + tid : "name:" + (ls.thread_name || "");
    if (!(key in threadIndex)) {
      threadIndex[key] = threadKeys.length;
      threadKeys.push("");
      nameWeight.push({});
    }
    return threadIndex[key];
  });
  var firstValues = rows.values[0] || [];
  for (i = 0; i < nRows; i++) {
    var ls = doc.labelSets[rows.labels[i]];
    var ti = setThread[rows.labels[i]];
    rowThread[i] = ti;
    var nm = ls.thread_name || "";
    nameWeight[ti][nm] = (nameWeight[ti][nm] || 0) + Math.abs(firstValues[i] || 0) + 1e-9;
  }
  doc.labelSets.forEach(function (ls, li) {
    var ti = setThread[li];
    if (threadKeys[ti]) return;
    var best = "";
    var bestW = -1;
    Object.keys(nameWeight[ti]).forEach(function (nm) {
      if (nm && nameWeight[ti][nm] > bestW) {
        best = nm;
        bestW = nameWeight[ti][nm];
      }
    });
    var tid = ls.thread_id || "";
    threadKeys[ti] = best && tid ? best + " (" + tid + ")" : best || (tid ? "thread " + tid : "");
  });
  var hasThreads = threadKeys.length > 1 || (threadKeys.length === 1 && threadKeys[0] !== "");

  // ---------------------------------------------------------------- build a view
  /** Sums the selected rows into self/total per trie node. */
  function sums(typeIdx, thread) {
    var self = new Float64Array(nNodes);
    var vals = rows.values[typeIdx];
    for (var r = 0; r < nRows; r++) {
      if (thread >= 0 && rowThread[r] !== thread) continue;
      self[rows.node[r]] += vals[r];
    }
    var total = Float64Array.from(self);
    for (var n = nNodes - 1; n >= 1; n--) total[parent[n]] += total[n];
    return { self: self, total: total };
  }

  /** Appends the subtree under trie node `root` (depth `base`) to flamebearer levels. */
  function emit(levels, prevEnd, s, root, base, x0) {
    // Iterative DFS; x of a child = x of its parent + totals of its earlier siblings.
    var stack = [root, base, x0];
    while (stack.length) {
      var x = stack.pop();
      var depth = stack.pop();
      var node = stack.pop();
      var t = s.total[node];
      if (t <= 0) continue;
      if (node !== root) {
        while (levels.length <= depth) {
          levels.push([]);
          prevEnd.push(0);
        }
        levels[depth].push(x - prevEnd[depth], t, s.self[node], frameOf[node]);
        prevEnd[depth] = x + t;
      }
      var childDepth = node === root ? depth : depth + 1;
      // Push children in reverse so the alphabetically first is laid out first.
      var c0 = firstChild[node];
      var cn = childCount[node];
      var offsets = [];
      var cx = x;
      for (var c = 0; c < cn; c++) {
        offsets.push(cx);
        cx += s.total[c0 + c];
      }
      for (c = cn - 1; c >= 0; c--) {
        if (s.total[c0 + c] > 0) stack.push(c0 + c, childDepth, offsets[c]);
      }
    }
  }

  var baseNames = doc.frames.names;
  var baseFiles = doc.frames.file.map(function (f) {
    return doc.frames.files[f];
  });

  function buildFlamebearer(typeIdx, threadChoice) {
    var names = baseNames.slice();
    var kinds = doc.frames.kind.slice();
    var files = baseFiles.slice();
    var lines = doc.frames.line.slice();
    var ROOT = names.length;
    names.push("all");
    kinds.push(3);
    files.push("");
    lines.push(0);
    var levels = [[]];
    var prevEnd = [0];
    var grand = 0;
    var maxSelf = 0;
    if (threadChoice === "split") {
      // One synthetic root frame per thread, largest first.
      var perThread = threadKeys.map(function (_k, ti) {
        return { ti: ti, s: sums(typeIdx, ti) };
      });
      perThread.sort(function (a, b) {
        return b.s.total[0] - a.s.total[0];
      });
      levels.push([]);
      prevEnd.push(0);
      perThread.forEach(function (pt) {
        var t = pt.s.total[0];
        if (t <= 0) return;
        var nameIdx = names.length;
        names.push("thread: " + (threadKeys[pt.ti] || "(no thread label)"));
        kinds.push(3);
        files.push("");
        lines.push(0);
        levels[1].push(grand - prevEnd[1], t, pt.s.self[0], nameIdx);
        prevEnd[1] = grand + t;
        emit(levels, prevEnd, pt.s, 0, 2, grand);
        for (var n = 0; n < nNodes; n++) if (pt.s.self[n] > maxSelf) maxSelf = pt.s.self[n];
        grand += t;
      });
      levels[0].push(0, grand, 0, ROOT);
    } else {
      var thread = threadChoice === "all" ? -1 : +threadChoice;
      var s = sums(typeIdx, thread);
      grand = s.total[0];
      levels[0].push(0, grand, s.self[0], ROOT);
      emit(levels, prevEnd, s, 0, 1, 0);
      for (var n = 0; n < nNodes; n++) if (s.self[n] > maxSelf) maxSelf = s.self[n];
    }
    return {
      names: names,
      kinds: kinds,
      files: files,
      lines: lines,
      levels: levels,
      numTicks: grand,
      maxSelf: maxSelf,
    };
  }

  // ---------------------------------------------------------------- page wiring
  var fmt = HostprofFlamegraph.formatValue;
  var crumbs = $("hp-crumbs");
  var fg = new HostprofFlamegraph($("hp-flamegraph"), {
    inverted: true,
    onZoom: function (node) {
      $("hp-reset").disabled = !node;
      if (!node) {
        crumbs.textContent = "Click a frame to zoom in, Esc to reset.";
        return;
      }
      crumbs.innerHTML = "Zoomed to <b>" + HostprofFlamegraph.escapeHtml(node.name) + "</b> · " +
        HostprofFlamegraph.escapeHtml(fmt(node.total, types[state.type].unit)) + " (" +
        HostprofFlamegraph.percent(node.total, fg.numTicks) + " of all)";
    },
  });
  window.hostprofFlamegraph = fg; // for the browser tests and the curious

  var state = { type: doc.defaultType || 0, thread: "all" };

  var typeSel = $("hp-type");
  types.forEach(function (t, i) {
    var o = document.createElement("option");
    o.value = i;
    o.textContent = t.type + " (" + t.unit + ")";
    typeSel.appendChild(o);
  });
  typeSel.value = state.type;
  $("hp-type-field").hidden = types.length < 2;

  var threadSel = $("hp-thread");
  function fillThreads() {
    var totals = sums(state.type, -1);
    var perThread = new Float64Array(threadKeys.length);
    var vals = rows.values[state.type];
    for (var r = 0; r < nRows; r++) perThread[rowThread[r]] += vals[r];
    var all = totals.total[0];
    var prev = threadSel.value || state.thread;
    threadSel.innerHTML = "";
    function add(value, label) {
      var o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      threadSel.appendChild(o);
    }
    add("all", "All threads, merged");
    if (hasThreads) {
      add("split", "All threads, one root per thread");
      var order = threadKeys.map(function (_k, i) {
        return i;
      });
      order.sort(function (a, b) {
        return perThread[b] - perThread[a];
      });
      order.forEach(function (ti) {
        if (perThread[ti] <= 0) return;
        add(String(ti), (threadKeys[ti] || "(no thread label)") + " — " + HostprofFlamegraph.percent(perThread[ti], all));
      });
    }
    threadSel.value = prev;
    if (threadSel.value !== prev) threadSel.value = "all";
    state.thread = threadSel.value;
    $("hp-thread-field").hidden = !hasThreads;
  }

  function renderMeta() {
    var t = types[state.type];
    var parts = [];
    parts.push(fmt(t.total, t.unit) + " " + t.type);
    parts.push(HostprofFlamegraph.formatValue(doc.stacks, "count") + " distinct stacks");
    if (hasThreads) parts.push(threadKeys.length + " threads");
    if (doc.timeRange && doc.timeRange[1] > doc.timeRange[0]) {
      parts.push(new Date(doc.timeRange[0] / 1e6).toISOString().replace("T", " ").slice(0, 19) + " UTC");
      parts.push(fmt(doc.timeRange[1] - doc.timeRange[0], "nanoseconds"));
    }
    $("hp-meta").textContent = parts.join(" · ");
  }

  var topTable = $("hp-top");
  function update() {
    var fb = buildFlamebearer(state.type, state.thread);
    fg.setData(fb, { format: "single", units: types[state.type].unit, keepZoom: true });
    runSearch();
    renderMeta();
    if ($("hp-top-details").open) renderTop();
    else topTable.dataset.stale = "1";
  }

  function renderTop() {
    topTable.dataset.stale = "";
    HostprofFlamegraph.renderTopTable(topTable, fg, {
      limit: 300,
      onPick: function (row) {
        $("hp-search").value = row.name;
        runSearch();
        window.scrollTo({ top: 0, behavior: "smooth" });
      },
    });
  }
  $("hp-top-details").addEventListener("toggle", function () {
    if ($("hp-top-details").open && topTable.dataset.stale) renderTop();
  });

  function runSearch() {
    var q = $("hp-search").value.trim();
    var res = fg.search(q);
    var el = $("hp-matched");
    if (!q) {
      el.textContent = "";
      return;
    }
    el.textContent = res.frames
      ? "matched " + HostprofFlamegraph.percent(res.ticks, fg.numTicks) + " (" + fmt(res.ticks, types[state.type].unit) + ")"
      : "no match";
  }

  var searchTimer = 0;
  $("hp-search").addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, nRows > 20000 ? 120 : 30);
  });
  $("hp-reset").addEventListener("click", function () {
    fg.reset();
  });
  $("hp-invert").addEventListener("click", function () {
    fg.setInverted(!fg.inverted);
    $("hp-invert").textContent = fg.inverted ? "Root at bottom" : "Root at top";
  });
  typeSel.addEventListener("change", function () {
    state.type = +typeSel.value;
    fillThreads();
    update();
  });
  threadSel.addEventListener("change", function () {
    state.thread = threadSel.value;
    update();
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") {
      if (document.activeElement === $("hp-search") && $("hp-search").value) {
        $("hp-search").value = "";
        runSearch();
      } else fg.reset();
    } else if ((ev.key === "/" || (ev.key === "f" && (ev.ctrlKey || ev.metaKey))) && document.activeElement !== $("hp-search")) {
      ev.preventDefault();
      $("hp-search").focus();
    }
  });

  fillThreads();
  update();
})();
