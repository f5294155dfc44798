"""The resource budget: measures the agent's CPU and RSS and decides what to give up.

Order of actions when over budget (each is logged, counted in /metrics and listed in status):

1. **lower rates**: every sampling rate is scaled down by the overshoot (at most 64x per step),
   never below ``min_rate_hz``;
2. **drop collectors**: the optional eBPF collectors go, in this order: ``syscalls``,
   ``offcpu``, ``gc``, ``cpu`` (the host-wide one last);
3. **shed targets**: lowest rule priority first, then the most recently attached; as many as
   the overshoot says, at least one.

The first two intervals after start are not acted on (they measure imports and the first
scan, not the steady state). Memory over budget skips step 1 (rates do not hold memory) and
goes to steps 2 and 3.
When usage stays under 40 % of the budget for three intervals in a row (and, to bring back a
shed target, would stay under 60 % with one more target), the newest action is undone. Each
undo doubles the wait before the next one (up to 48 intervals), so the agent settles instead
of oscillating.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Callable
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.config import BudgetConfig
from hostprof.metrics import process_usage

log = logging.getLogger("hostprof.agent")

DROP_ORDER = ("syscalls", "offcpu", "gc", "cpu")
"""Collectors given up, first to last, before any target is shed."""


@dataclasses.dataclass
class Action:
    """One budget action, kept for status and undo."""

    kind: str
    """``lower_rates``, ``drop_collector`` or ``shed_targets``."""
    detail: str
    """Human-readable: what changed and why."""
    at_ns: int
    factor: float = 1.0
    collector: str = ""
    targets: Tuple[str, ...] = ()


class Budget:
    """Tracks usage and the current degradation state.

    The daemon supplies callbacks; the budget only decides.
    """

    def __init__(self, cfg: BudgetConfig) -> None:
        self.cfg = cfg
        self.rate_scale = 1.0
        """Multiplier applied to every requested rate."""
        self.dropped_collectors: List[str] = []
        self.shed: List[str] = []
        """Target ids shed, in order."""
        self.actions: List[Action] = []
        """Every action taken (bounded: the newest 100)."""
        self._stack: List[Action] = []  # undoable, newest last
        self._cpu0: Optional[float] = None
        self._t0 = 0.0
        self.cpu_percent = 0.0
        self.rss_bytes = 0
        self._calm = 0
        self._undo_wait = 3
        self._warmup = 2  # the first intervals measure start-up (imports, first scan)
        self.measured_s = 0.0

    def measure(self, pids: Tuple[int, ...] = ()) -> Tuple[float, int]:
        """Updates and returns (CPU % of one core since the last call, RSS bytes).

        ``pids`` are helper processes the agent started (counted with the agent).
        """
        cpu, rss = process_usage(os.getpid())
        for pid in pids:
            try:
                c, r = process_usage(pid)
            except OSError:
                continue
            cpu += c
            rss += r
        now = time.monotonic()
        self.measured_s = now - self._t0 if self._cpu0 is not None else 0.0
        if self._cpu0 is not None and now > self._t0:
            self.cpu_percent = 100.0 * (cpu - self._cpu0) / (now - self._t0)
        self._cpu0, self._t0 = cpu, now
        self.rss_bytes = rss
        self.cpu_seconds = cpu
        return self.cpu_percent, rss

    def decide(
        self, active_collectors: List[str], targets_by_shed_order: List[str], rates_at_floor: bool
    ) -> Optional[Action]:
        """Picks the next action from the latest measurement, or an undo, or None.

        Args:
            active_collectors: eBPF collectors currently running (host-wide or per target).
            targets_by_shed_order: attached target ids, first to shed first.
            rates_at_floor: True when every rate is already at ``min_rate_hz``.
        """
        if self._warmup > 0:
            self._warmup -= 1
            return None
        if self.measured_s < self.cfg.interval_s / 2:
            return None  # too short to judge (e.g. right after an action)
        over_cpu = self.cpu_percent > self.cfg.max_cpu_percent
        over_mem = self.rss_bytes > self.cfg.max_memory_mb * 1024 * 1024
        now = time.time_ns()
        if over_cpu or over_mem:
            self._calm = 0
            overshoot = max(
                self.cpu_percent / self.cfg.max_cpu_percent if over_cpu else 0,
                self.rss_bytes / (self.cfg.max_memory_mb * 1048576) if over_mem else 0,
            )
            why = (
                f"cpu {self.cpu_percent:.2f}% > {self.cfg.max_cpu_percent:g}%"
                if over_cpu
                else f"rss {self.rss_bytes / 1048576:.0f} MiB > {self.cfg.max_memory_mb:g} MiB"
            )
            if over_cpu and not over_mem and not rates_at_floor:
                factor = max(1 / 64, min(0.5, 0.8 / overshoot))
                return self._take(
                    Action("lower_rates", f"{why}: rates x{factor:.2f}", now, factor=factor)
                )
            for name in DROP_ORDER:
                if name in active_collectors and name not in self.dropped_collectors:
                    return self._take(
                        Action("drop_collector", f"{why}: dropped {name}", now, collector=name)
                    )
            if targets_by_shed_order:
                n = len(targets_by_shed_order)
                # 20 % margin: part of the usage is fixed (discovery, push), not per target.
                count = max(1, math.ceil(n * (1 - 0.8 / overshoot)))
                count = min(count, n)
                chosen = tuple(targets_by_shed_order[:count])
                return self._take(
                    Action(
                        "shed_targets", f"{why}: shed {count} of {n} targets", now, targets=chosen
                    )
                )
            return None
        running = len(targets_by_shed_order)
        headroom = self.cpu_percent < self.cfg.max_cpu_percent * 0.4
        if headroom and self._stack and self._stack[-1].kind == "shed_targets" and running:
            # Bringing a target back: only when usage scaled by one more target stays well
            # under the budget (usage is not all per target, so this is conservative).
            headroom = self.cpu_percent * (running + 1) / running < self.cfg.max_cpu_percent * 0.6
        if headroom and self.rss_bytes < self.cfg.max_memory_mb * 1048576 * 0.7 and self._stack:
            self._calm += 1
            if self._calm >= self._undo_wait:
                self._calm = 0
                self._undo_wait = min(self._undo_wait * 2, 48)
                return self._undo(now)
        else:
            self._calm = 0
        return None

    @property
    def shedding(self) -> bool:
        """True while some targets are shed (new targets then wait too)."""
        return any(a.kind == "shed_targets" for a in self._stack)

    def rebaseline(self, pids: Tuple[int, ...] = ()) -> None:
        """Starts the next measurement now, so an action's own cost (restarting collectors,
        final drains) is not counted as steady-state usage."""
        cpu, _ = process_usage(os.getpid())
        for pid in pids:
            try:
                cpu += process_usage(pid)[0]
            except OSError:
                continue
        self._cpu0, self._t0 = cpu, time.monotonic()

    def _take(self, action: Action) -> Action:
        if action.kind == "lower_rates":
            self.rate_scale *= action.factor
        elif action.kind == "drop_collector":
            self.dropped_collectors.append(action.collector)
        elif action.kind == "shed_targets":
            self.shed.extend(action.targets)
        self._stack.append(action)
        self._record(action)
        log.warning("over budget: %s", action.detail)
        return action

    def _undo(self, now: int) -> Action:
        last = self._stack.pop()
        if last.kind == "lower_rates":
            self.rate_scale = min(1.0, self.rate_scale / last.factor)
            undo = Action(
                "restore_rates",
                f"under budget: rates x{1 / last.factor:.2f}",
                now,
                factor=1 / last.factor,
            )
        elif last.kind == "drop_collector":
            self.dropped_collectors.remove(last.collector)
            undo = Action(
                "restore_collector",
                f"under budget: restored {last.collector}",
                now,
                collector=last.collector,
            )
        else:
            # Bring back one shed target at a time.
            target = last.targets[-1]
            if len(last.targets) > 1:
                self._stack.append(dataclasses.replace(last, targets=last.targets[:-1]))
            self.shed.remove(target)
            undo = Action(
                "restore_target", f"under budget: restored target {target}", now, targets=(target,)
            )
        self._record(undo)
        log.info("%s", undo.detail)
        return undo

    def _record(self, action: Action) -> None:
        self.actions.append(action)
        del self.actions[:-100]

    def forget_target(self, target_id: str) -> None:
        """A shed target exited: nothing to restore."""
        if target_id in self.shed:
            self.shed.remove(target_id)
        for i, a in enumerate(self._stack):
            if target_id in a.targets:
                rest = tuple(t for t in a.targets if t != target_id)
                self._stack[i] = dataclasses.replace(a, targets=rest)
        self._stack = [a for a in self._stack if a.kind != "shed_targets" or a.targets]


Callback = Callable[[Action], None]
