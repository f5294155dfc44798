/*
 * Interactivity of hostprof's standalone SVG flamegraph (hostprof.encoders.svg): click a
 * frame to zoom, "Search" to highlight a regular expression, "Reset Zoom" to go back. The
 * SVG is laid out in Python; every frame is a <g class="f" data-d="depth" data-n="name">
 * holding a <title>, a <rect> and a <text>.
 */
var hp = {};

function init() {
  hp.svg = document.documentElement;
  hp.width = +hp.svg.getAttribute("width");
  hp.pad = +hp.svg.getAttribute("data-pad");
  hp.charWidth = +hp.svg.getAttribute("data-char-width");
  hp.frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  hp.details = document.getElementById("details");
  hp.matched = document.getElementById("matched");
  hp.reset = document.getElementById("reset");
  hp.frames.forEach(function (g) {
    var r = g.querySelector("rect");
    g._x = +r.getAttribute("x");
    g._w = +r.getAttribute("width");
    g._d = +g.getAttribute("data-d");
    g._fill = r.getAttribute("fill");
    g.addEventListener("click", function () {
      zoom(g);
    });
    g.addEventListener("mouseover", function () {
      hp.details.textContent = g.querySelector("title").textContent;
    });
    g.addEventListener("mouseout", function () {
      hp.details.textContent = " ";
    });
  });
  hp.reset.addEventListener("click", unzoom);
  document.getElementById("search").addEventListener("click", function () {
    var term = prompt("Search for (regular expression, case-insensitive)", hp.term || "");
    if (term !== null) search(term);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") {
      unzoom();
      search("");
    }
  });
}

function place(g, x, w) {
  var r = g.querySelector("rect");
  var t = g.querySelector("text");
  if (!t) {
    // Narrow frames are written without a label; make one when zooming widens them.
    t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("y", +r.getAttribute("y") + +r.getAttribute("height") - 3.5);
    g.appendChild(t);
  }
  r.setAttribute("x", x);
  r.setAttribute("width", w);
  t.setAttribute("x", x + 3);
  var name = g.getAttribute("data-n");
  var n = Math.floor((w - 6) / hp.charWidth);
  t.textContent = n < 2 ? "" : name.length > n ? name.slice(0, n - 1) + "\u2026" : name;
}

function zoom(target) {
  var zx = target._x;
  var zw = target._w;
  var scale = (hp.width - 2 * hp.pad) / zw;
  var eps = 1e-6;
  hp.frames.forEach(function (g) {
    var show;
    if (g._d < target._d) {
      // Ancestors span the whole width, faded.
      show = g._x <= zx + eps && g._x + g._w >= zx + zw - eps;
      if (show) place(g, hp.pad, hp.width - 2 * hp.pad);
      g.style.opacity = "0.6";
    } else {
      show = g._x >= zx - eps && g._x + g._w <= zx + zw + eps;
      if (show) place(g, hp.pad + (g._x - zx) * scale, g._w * scale);
      g.style.opacity = "";
    }
    g.style.display = show ? "" : "none";
  });
  hp.reset.style.display = "";
  hp.zoomed = target;
}

function unzoom() {
  hp.frames.forEach(function (g) {
    place(g, g._x, g._w);
    g.style.display = "";
    g.style.opacity = "";
  });
  hp.reset.style.display = "none";
  hp.zoomed = null;
}

/** Highlights frames matching `term`; shows the share of the width under a match. */
function search(term) {
  hp.term = term;
  var re = null;
  if (term) {
    try {
      re = new RegExp(term, "i");
    } catch (e) {
      re = new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i");
    }
  }
  var spans = [];
  hp.frames.forEach(function (g) {
    var hit = re !== null && g._d > 0 && re.test(g.getAttribute("data-n"));
    g.querySelector("rect").setAttribute("fill", hit ? "rgb(224,64,251)" : g._fill);
    if (hit) spans.push([g._x, g._x + g._w]);
  });
  // Nested matches overlap their ancestors' spans: merge them to count each sample once.
  spans.sort(function (a, b) {
    return a[0] - b[0];
  });
  var covered = 0;
  var end = -Infinity;
  spans.forEach(function (s) {
    if (s[0] >= end) {
      covered += s[1] - s[0];
      end = s[1];
    } else if (s[1] > end) {
      covered += s[1] - end;
      end = s[1];
    }
  });
  var pct = (100 * covered) / (hp.width - 2 * hp.pad);
  hp.matched.textContent = re ? "Matched: " + pct.toFixed(1) + "%" : "";
  hp.matchedPercent = re ? pct : 0;
}
