"""A small, recognisable workload for the demo (``scripts/demo.sh``) and the agent's tests.

It runs forever (or ``--seconds``), spending its CPU in a few named functions so a flamegraph
of it is easy to read: ``handle_request`` calls ``parse_payload``, ``compute_prices`` (the
hot one: ~60 %) and ``render_template``; a background thread runs ``refresh_cache``.

Usage::

    python -m hostprof.demo_workload [--seconds N] [--duty 0.2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time


def parse_payload(n: int) -> dict:
    """JSON round trips: the 'parse' share of a request."""
    doc = {"items": [{"sku": i, "qty": i % 7, "name": f"item-{i}"} for i in range(n)]}
    return json.loads(json.dumps(doc))


def price_of(item: dict) -> float:
    """Pure-Python arithmetic: the hot leaf."""
    p = 0.0
    for k in range(60):
        p += math.sqrt(item["sku"] * k + 1.0) / (k + 1)
    return p * item["qty"]


def compute_prices(payload: dict) -> float:
    """The hot path of every request."""
    return sum(price_of(item) for item in payload["items"])


def render_template(total: float) -> str:
    """String building: the 'render' share."""
    rows = [f"<tr><td>{i}</td><td>{total / (i + 1):.2f}</td></tr>" for i in range(300)]
    return "<table>" + "".join(rows) + "</table>"


def handle_request(n: int = 120) -> int:
    """One request: parse, compute, render."""
    payload = parse_payload(n)
    total = compute_prices(payload)
    return len(render_template(total))


def refresh_cache(stop: threading.Event) -> None:
    """A background thread hashing in a loop with short sleeps."""
    data = b"x" * 4096
    while not stop.is_set():
        for _ in range(200):
            data = hashlib.sha256(data).digest() * 128
        time.sleep(0.01)


def main() -> None:
    """Runs the workload; prints READY once its threads are up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after N s (0: never)")
    parser.add_argument(
        "--duty",
        type=float,
        default=1.0,
        help="fraction of the time spent working (the rest sleeping)",
    )
    args = parser.parse_args()
    stop = threading.Event()
    worker = threading.Thread(
        target=refresh_cache, args=(stop,), name="cache-refresher", daemon=True
    )
    worker.start()
    print("READY", flush=True)
    end = time.monotonic() + args.seconds if args.seconds else math.inf
    requests = 0
    try:
        while time.monotonic() < end:
            t0 = time.monotonic()
            handle_request()
            requests += 1
            if args.duty < 1.0:
                busy = time.monotonic() - t0
                time.sleep(busy * (1.0 - args.duty) / max(args.duty, 0.01))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        print(f"requests {requests}", flush=True)


if __name__ == "__main__":
    main()
