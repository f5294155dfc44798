"""The `hostprof top` subcommand: a live view of a process's hottest Python functions."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import numpy as np

from hostprof.cli._common import Command
from hostprof.cli._common import add_pid_option
from hostprof.cli._common import check_pid
from hostprof.cli._common import positive_float
from hostprof.collectors._batch import RawBatch
from hostprof.collectors.python import PythonCollector

FunctionKey = Tuple[str, str]
"""(function, file): top aggregates lines of a function together."""


class TopTable:
    """Own and total sample counts per function, for the last interval and overall."""

    def __init__(self) -> None:
        self.own: Dict[FunctionKey, int] = {}
        self.total: Dict[FunctionKey, int] = {}
        self.own_all: Dict[FunctionKey, int] = {}
        self.total_all: Dict[FunctionKey, int] = {}
        self.samples = 0
        self.samples_all = 0

    def add(self, batch: RawBatch) -> None:
        """Replaces the last interval with ``batch`` and adds it to the overall counts."""
        n = len(batch)
        self.own, self.total, self.samples = {}, {}, n
        self.samples_all += n
        if n == 0:
            return
        keys: List[FunctionKey] = [(f.function, f.file) for f in batch.frames]
        uniq_keys = sorted(set(keys))
        key_id = {k: i for i, k in enumerate(uniq_keys)}
        fmap = np.array([key_id[k] for k in keys], dtype=np.int64)
        lengths = np.diff(batch.stack_offsets)
        nonempty = lengths > 0
        leaves = fmap[batch.stack_frames[batch.stack_offsets[1:][nonempty] - 1]]
        own = np.bincount(leaves, minlength=len(uniq_keys))
        # A function counts once per sample in "total", however often it recurses.
        sample_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        pairs = np.unique(sample_of * len(uniq_keys) + fmap[batch.stack_frames])
        total = np.bincount(pairs % len(uniq_keys), minlength=len(uniq_keys))
        for i, k in enumerate(uniq_keys):
            if own[i]:
                self.own[k] = int(own[i])
                self.own_all[k] = self.own_all.get(k, 0) + int(own[i])
            if total[i]:
                self.total[k] = int(total[i])
                self.total_all[k] = self.total_all.get(k, 0) + int(total[i])

    def rows(self, limit: int) -> List[Tuple[float, float, float, float, FunctionKey]]:
        """(own %, total %, own s, total s placeholder) rows, hottest own first."""
        keys = set(self.total) | set(self.own_all)
        out = []
        for k in keys:
            own = 100.0 * self.own.get(k, 0) / self.samples if self.samples else 0.0
            total = 100.0 * self.total.get(k, 0) / self.samples if self.samples else 0.0
            out.append(
                (own, total, float(self.own_all.get(k, 0)), float(self.total_all.get(k, 0)), k)
            )
        out.sort(key=lambda r: (-r[0], -r[1], -r[2], r[4]))
        return out[:limit]


class TopCommand(Command):
    """Live view of a process's hottest Python functions, refreshed every second.

    Columns: %Own (samples where the function was running itself) and %Total (samples where
    it was anywhere on the stack) over the last interval, then the same as seconds over the
    whole session. Idle threads are left out unless --idle. Press Ctrl-C to quit.

    examples:
      hostprof top --pid 1234                  refresh every second until Ctrl-C
      hostprof top --pid 1234 --rate 500       sample faster for short functions
      hostprof top --pid 1234 --duration 5     stop after 5 s (prints one table when piped)
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_pid_option(parser, required=True)
        parser.add_argument(
            "-r",
            "--rate",
            type=positive_float,
            default=100.0,
            help="samples per second (default 100)",
        )
        parser.add_argument(
            "--interval",
            type=positive_float,
            default=1.0,
            help="seconds between refreshes (default 1)",
        )
        parser.add_argument(
            "-d",
            "--duration",
            type=positive_float,
            default=None,
            help="stop after this many seconds (default: until Ctrl-C)",
        )
        parser.add_argument(
            "-n", "--limit", type=int, default=25, help="functions shown (default 25)"
        )
        parser.add_argument("--idle", action="store_true", help="include idle threads")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        pid = check_pid(args.pid)
        collector = PythonCollector.probe([pid], rate=args.rate, idle=args.idle)
        assert collector is not None
        proc = collector.targets[pid].proc
        title = f"hostprof top: pid {pid}, Python {proc.version}, {args.rate:g} Hz"
        table = TopTable()
        live = sys.stdout.isatty()
        collector.start()
        start = time.monotonic()
        try:
            if live:
                self._run_live(collector, table, title, args, start)
            else:
                self._run_plain(collector, table, title, args, start)
        except KeyboardInterrupt:
            pass
        finally:
            collector.close()
        return 0

    def _tick(
        self, collector: PythonCollector, table: TopTable, args: argparse.Namespace, start: float
    ) -> Optional[str]:
        """Waits one interval and folds the new samples in; returns why to stop, or None."""
        time.sleep(args.interval)
        table.add(collector.drain())
        if collector.finished:
            return "the process exited"
        if args.duration is not None and time.monotonic() - start >= args.duration:
            return "done"
        return None

    def _run_live(
        self,
        collector: PythonCollector,
        table: TopTable,
        title: str,
        args: argparse.Namespace,
        start: float,
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        with Live(
            render_rich(table, title, collector, args), console=console, auto_refresh=False
        ) as live:
            while True:
                why = self._tick(collector, table, args, start)
                live.update(render_rich(table, title, collector, args, why), refresh=True)
                if why:
                    break

    def _run_plain(
        self,
        collector: PythonCollector,
        table: TopTable,
        title: str,
        args: argparse.Namespace,
        start: float,
    ) -> None:
        while True:
            why = self._tick(collector, table, args, start)
            if why or args.duration is None:
                sys.stdout.write(render_text(table, title, collector, args, why))
                sys.stdout.flush()
            if why:
                break


def _rate_line(collector: PythonCollector, table: TopTable, why: Optional[str]) -> str:
    stats = collector.stats()
    line = (
        f"{table.samples} samples in the last interval, {stats['rate']:.1f} Hz achieved, "
        f"{100 * stats['efficiency']:.1f}% sampling efficiency"
    )
    return line + (f" ({why})" if why and why != "done" else "")


def render_text(
    table: TopTable,
    title: str,
    collector: PythonCollector,
    args: argparse.Namespace,
    why: Optional[str] = None,
) -> str:
    """The table as plain text (for pipes and logs)."""
    period = 1.0 / args.rate
    lines = [
        title,
        _rate_line(collector, table, why),
        f"{'%Own':>6} {'%Total':>7} {'OwnTime':>8} {'TotalTime':>9}  Function (file)",
    ]
    for own, total, own_n, total_n, (func, file) in table.rows(args.limit):
        lines.append(
            f"{own:6.1f} {total:7.1f} {own_n * period:7.2f}s {total_n * period:8.2f}s"
            f"  {func} ({file})"
        )
    return "\n".join(lines) + "\n\n"


def render_rich(
    table: TopTable,
    title: str,
    collector: PythonCollector,
    args: argparse.Namespace,
    why: Optional[str] = None,
) -> object:
    """The table as a rich renderable."""
    from rich.table import Table

    period = 1.0 / args.rate
    t = Table(title=title, caption=_rate_line(collector, table, why), expand=True)
    t.add_column("%Own", justify="right")
    t.add_column("%Total", justify="right")
    t.add_column("OwnTime", justify="right")
    t.add_column("TotalTime", justify="right")
    t.add_column("Function (file)", overflow="fold")
    for own, total, own_n, total_n, (func, file) in table.rows(args.limit):
        t.add_row(
            f"{own:.1f}",
            f"{total:.1f}",
            f"{own_n * period:.2f}s",
            f"{total_n * period:.2f}s",
            f"{func} ({file})",
        )
    return t
