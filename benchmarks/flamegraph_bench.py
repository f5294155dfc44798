"""HTML and SVG flamegraphs at 1k, 10k and 100k distinct stacks: encode time, file size, and
(in headless Chromium) time to first render, redraw, search and zoom.

The stacks are 8-40 frames deep over 3,400 functions, sharing short prefixes the way real
ones do, spread over 8 threads. html_MB_1000x is the size at 1,000 times the samples: the
file grows with distinct stacks, not samples.

Usage: .venv/bin/python benchmarks/flamegraph_bench.py [--runs 3] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict
from typing import List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hostprof.encoders import html
from hostprof.encoders import svg
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile


def make_profile(n_stacks: int, scale: int = 1, seed: int = 7) -> Profile:
    rng = random.Random(seed)
    p = Profile([SAMPLES])
    funcs = [
        Frame(f"mod{i % 50}.func_{i}", f"pkg/mod{i % 50}.py", i % 400 + 1) for i in range(3000)
    ]
    funcs += [Frame(f"native_{i}", "libfoo.so", 0, FrameKind.NATIVE) for i in range(300)]
    funcs += [Frame(f"kern_{i}", "", 0, FrameKind.KERNEL) for i in range(100)]
    ids: List[int] = []
    offsets = [0]
    for _ in range(n_stacks):
        depth = rng.randint(8, 40)
        stack = [0, 1 + rng.randrange(5)]
        while len(stack) < depth:
            if len(stack) > 6:
                stack.append(rng.randrange(len(funcs)))
            else:
                stack.append((stack[-1] * 7 + rng.randrange(3)) % 200)
        ids.extend(stack)
        offsets.append(len(ids))
    remap = p.frames.intern_all(funcs)
    labels = np.array(
        [p.labels.intern({"thread_id": str(100 + i), "thread_name": f"w{i}"}) for i in range(8)],
        dtype=np.uint32,
    )
    p.add_batch(
        np.array(ids, dtype=np.uint32),
        np.array(offsets, dtype=np.int64),
        np.array([rng.randint(1, 100) * scale for _ in range(n_stacks)], dtype=np.int64),
        labels[np.arange(n_stacks) % 8],
        remap,
    )
    return p


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def browser_times(path: Path, runs: int) -> Dict[str, float]:
    from tests._browser import browser

    out: Dict[str, List[float]] = {"load_s": [], "render_ms": [], "search_ms": [], "zoom_ms": []}
    with browser() as b:
        for _ in range(runs):
            page = b.new_page()
            t = time.perf_counter()
            page.navigate(path.as_uri(), timeout=120)
            page.wait_for("window.hostprofFlamegraph && hostprofFlamegraph.drawn.length > 0", 120)
            out["load_s"].append(time.perf_counter() - t)
            out["render_ms"].append(
                page.evaluate(
                    "(() => { const t = performance.now(); hostprofFlamegraph.render();"
                    " return performance.now() - t; })()"
                )
            )
            out["search_ms"].append(
                page.evaluate(
                    "(() => { const t = performance.now(); hostprofFlamegraph.search('func_12');"
                    " return performance.now() - t; })()"
                )
            )
            page.evaluate("hostprofFlamegraph.search('')")
            out["zoom_ms"].append(
                page.evaluate(
                    "(() => { const fg = hostprofFlamegraph;"
                    " const f = fg.drawn.filter(d => d.level === 2).sort((a, b) => b.w - a.w)[0];"
                    " const t = performance.now(); fg.zoomTo(f.level, f.index);"
                    " return performance.now() - t; })()"
                )
            )
            page.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            profile = make_profile(n)
            html_s = statistics.median(
                timed(lambda p=profile: html.write(p, io.BytesIO())) for _ in range(args.runs)
            )
            svg_s = statistics.median(
                timed(lambda p=profile: svg.write(p, io.BytesIO())) for _ in range(args.runs)
            )
            page = html.render(profile)
            heavy = len(html.render(make_profile(n, scale=1000)))
            path = Path(tmp) / f"fg-{n}.html"
            path.write_text(page)
            row = {
                "stacks": n,
                "html_enc_s": html_s,
                "html_MB": len(page.encode()) / 1e6,
                "html_MB_1000x": heavy / 1e6,
                "svg_enc_s": svg_s,
                "svg_MB": len(svg.render(profile).encode()) / 1e6,
            }
            if not args.no_browser:
                row.update(browser_times(path, args.runs))
            rows.append(row)
    cols = list(rows[0])
    print(f"flamegraph benchmark, median of {args.runs} runs")
    width = max(len(c) for c in cols)
    print("  ".join(f"{c:>{width}}" for c in cols))
    for r in rows:
        cells = [f"{r[c]:,.3f}" if isinstance(r[c], float) else f"{r[c]:,}" for c in cols]
        print("  ".join(f"{cell:>{width}}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
