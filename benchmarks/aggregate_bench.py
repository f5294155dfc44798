"""Aggregation throughput: 1,000,000 samples of 30-frame stacks drawn from 5,000 distinct stacks.

Measures the hot path every collector feeds: interning each sample's stack (C, GIL released)
and summing values per (stack, label set) (numpy), through ``Profile.add_batch`` in batches the
size a collector drains. Each run is a fresh process so peak RSS is the run's own.

Usage: .venv/bin/python benchmarks/aggregate_bench.py [--runs 5] [--samples 1000000]
Prints a table: samples/s (median, min, max) and peak RSS, against the target of 2 M samples/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

TARGET_RATE = 2_000_000


def one_run(n_samples: int, depth: int, distinct: int, batch: int) -> dict:
    import numpy as np

    from hostprof.model import CPU_NS
    from hostprof.model import SAMPLES
    from hostprof.model import Frame
    from hostprof.model import Profile

    rng = np.random.default_rng(7)
    n_frames = 20_000
    profile = Profile([CPU_NS, SAMPLES])
    local = [Frame(f"func_{i}", f"mod_{i % 300}.py", i % 900 + 1) for i in range(n_frames)]
    remap = profile.frames.intern_all(local)
    # The distinct stacks share prefixes, as real ones do (a few entry points, deep callees).
    stacks = rng.integers(0, n_frames, size=(distinct, depth), dtype=np.uint32)
    stacks[:, :5] = rng.integers(0, 20, size=(distinct, 5))
    picks = rng.zipf(1.3, size=n_samples) % distinct  # skewed, like real profiles
    labels = rng.integers(0, 8, size=n_samples, dtype=np.uint32)
    label_ids = np.array(
        [profile.labels.intern({"thread_id": str(t)}) for t in range(8)], dtype=np.uint32
    )
    values = np.stack([np.full(n_samples, 10_000_000), np.ones(n_samples)], axis=1).astype(np.int64)
    # Input as collectors hand it over: flat frame ids + offsets, per drained batch.
    batches = []
    for start in range(0, n_samples, batch):
        sel = picks[start : start + batch]
        flat = stacks[sel].reshape(-1)
        offsets = np.arange(len(sel) + 1, dtype=np.int64) * depth
        batches.append(
            (flat, offsets, values[start : start + batch], label_ids[labels[start : start + batch]])
        )
    t0 = time.perf_counter()
    for flat, offsets, vals, lids in batches:
        profile.add_batch(flat, offsets, vals, lids, remap)
    profile.compact()
    elapsed = time.perf_counter() - t0
    assert profile.totals()[1] == n_samples
    return {
        "seconds": elapsed,
        "rate": n_samples / elapsed,
        "rows": len(profile),
        "stacks": len(profile.stacks),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--distinct", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args.samples, args.depth, args.distinct, args.batch)))
        return
    results = []
    for _ in range(args.runs):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--samples",
                str(args.samples),
                "--depth",
                str(args.depth),
                "--distinct",
                str(args.distinct),
                "--batch",
                str(args.batch),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
    rates = [r["rate"] for r in results]
    rss = [r["peak_rss_mb"] for r in results]
    print(
        f"aggregation: {args.samples:,} samples, {args.depth}-frame stacks, "
        f"{args.distinct:,} distinct, batches of {args.batch:,}, {args.runs} runs"
    )
    print(f"{'metric':<28}{'median':>14}{'min':>14}{'max':>14}{'target':>14}")
    print(
        f"{'samples/s':<28}{statistics.median(rates):>14,.0f}{min(rates):>14,.0f}"
        f"{max(rates):>14,.0f}{TARGET_RATE:>14,}"
    )
    secs = [r["seconds"] for r in results]
    print(
        f"{'seconds':<28}{statistics.median(secs):>14.3f}{min(secs):>14.3f}{max(secs):>14.3f}{'':>14}"
    )
    print(
        f"{'peak RSS (MiB, whole proc)':<28}{statistics.median(rss):>14.1f}{min(rss):>14.1f}"
        f"{max(rss):>14.1f}{'':>14}"
    )
    print(
        f"distinct stacks interned: {results[0]['stacks']:,}; "
        f"rows (stack x labels): {results[0]['rows']:,}"
    )
    print(
        "verdict: "
        + ("meets" if statistics.median(rates) >= TARGET_RATE else "misses")
        + f" the {TARGET_RATE:,} samples/s target"
    )


if __name__ == "__main__":
    main()
