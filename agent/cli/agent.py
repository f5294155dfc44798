"""The `hostprof agent` subcommand: the continuous profiling daemon and its helpers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any
from typing import Dict

from hostprof import config as config_mod
from hostprof._errors import UsageError
from hostprof.cli._common import Command


class AgentCommand(Command):
    """Continuous profiling daemon: finds Python processes, samples them, pushes 10 s windows.

    The agent discovers targets by rules (default: every CPython process, plus host-wide CPU
    when eBPF works), cuts clock-aligned windows and pushes them as pprof to the embedded
    store or Grafana Pyroscope. Failed pushes are spooled to disk and retried, so nothing is
    lost while the store is down. It stays within a CPU/memory budget by lowering rates,
    dropping eBPF collectors, then shedding targets, and says so in status and /metrics.

    actions:
      run           run the daemon in the foreground (systemd runs this)
      status        show a running agent's targets, rates, last push and spool
      install       write a systemd unit (least capabilities); --uninstall removes it
      check-config  parse a config file and print the effective settings

    examples:
      hostprof agent run                                   defaults: all Python, embedded store
      hostprof agent run --config /etc/hostprof/agent.toml
      hostprof agent run --store http://pyroscope:4040 --window 10
      hostprof agent status
      hostprof agent status --json
      hostprof agent check-config --config examples/agent.toml
      sudo hostprof agent install && sudo systemctl enable --now hostprof-agent
      sudo hostprof agent install --uninstall

    signals: SIGTERM/SIGINT flush the current window (push or spool) and exit within 5 s;
    SIGHUP reloads the config file (a bad file is logged and the running config kept).
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="agent_action", metavar="<action>")
        run = sub.add_parser(
            "run",
            help="run the daemon in the foreground",
            description="Runs the agent until SIGTERM/SIGINT. SIGHUP reloads --config.\n\n"
            "examples:\n  hostprof agent run --config /etc/hostprof/agent.toml\n"
            "  hostprof agent run --store http://127.0.0.1:4040 --spool-dir /tmp/spool",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _config_option(run)
        run.add_argument(
            "--store",
            metavar="URL",
            help="store URL (overrides store.url), e.g. http://127.0.0.1:4040",
        )
        run.add_argument(
            "--window",
            type=float,
            metavar="SECONDS",
            help="window length (overrides agent.window_s)",
        )
        run.add_argument("--spool-dir", metavar="DIR", help="overrides agent.spool_dir")
        run.add_argument("--status-socket", metavar="PATH", help="overrides agent.status_socket")
        run.add_argument(
            "--metrics-addr",
            metavar="HOST:PORT",
            help="overrides agent.metrics_addr ('' disables /metrics)",
        )
        run.add_argument(
            "--log-level", default="info", choices=("debug", "info", "warning", "error")
        )
        status = sub.add_parser(
            "status",
            help="show a running agent's state",
            description="Reads the running agent's state over its Unix socket.\n\n"
            "examples:\n  hostprof agent status\n  hostprof agent status --json | jq .targets",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _config_option(status)
        status.add_argument("--socket", metavar="PATH", help="status socket (default: config)")
        status.add_argument("--json", action="store_true", help="print the raw JSON state")
        install = sub.add_parser(
            "install",
            help="write (or remove) the systemd unit",
            description="Writes hostprof-agent.service with the least capabilities needed.\n\n"
            "examples:\n  sudo hostprof agent install && sudo systemctl enable --now "
            "hostprof-agent\n  sudo hostprof agent install --uninstall",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        install.add_argument("--uninstall", action="store_true", help="remove the unit")
        install.add_argument(
            "--unit-dir",
            default=os.environ.get("HOSTPROF_SYSTEMD_DIR"),
            metavar="DIR",
            help="where units go (default /etc/systemd/system)",
        )
        _config_option(install)
        check = sub.add_parser(
            "check-config",
            help="validate a config file",
            description="Parses the config and prints the effective settings as JSON.\n\n"
            "examples:\n  hostprof agent check-config --config examples/agent.toml",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _config_option(check)

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        action = getattr(args, "agent_action", None)
        if action == "run":
            return _run(args)
        if action == "status":
            return _status(args)
        if action == "install":
            return _install(args)
        if action == "check-config":
            cfg = config_mod.load(args.config)
            print(json.dumps(_jsonable(cfg), indent=2))
            return 0
        raise UsageError("missing action", "use: hostprof agent run|status|install|check-config")


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default=config_mod.DEFAULT_PATH,
        metavar="FILE",
        help=f"TOML config (default {config_mod.DEFAULT_PATH}; "
        "a missing default file means defaults)",
    )


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if args.store:
        out["store_url"] = args.store
    if args.window:
        out["window_s"] = args.window
        out["drain_interval_s"] = args.window
    if args.spool_dir:
        out["spool_dir"] = args.spool_dir
    if args.status_socket:
        out["status_socket"] = args.status_socket
    if args.metrics_addr is not None:
        out["metrics_addr"] = args.metrics_addr
    return out


def _run(args: argparse.Namespace) -> int:
    from hostprof.daemon import Daemon

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s hostprof-agent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    overrides = _overrides(args)
    cfg = config_mod.with_overrides(config_mod.load(args.config), **overrides)
    path = args.config if os.path.exists(args.config) else None
    return Daemon(cfg, path, overrides).run()


def _status(args: argparse.Namespace) -> int:
    from hostprof.control import read_status

    path = args.socket
    if not path:
        path = config_mod.load(args.config).status_socket
    state = read_status(path)
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    print(_format_status(state))
    return 0


def _ago(ns: int) -> str:
    if not ns:
        return "never"
    return f"{time.time() - ns / 1e9:.1f} s ago"


def _format_status(s: Dict[str, Any]) -> str:
    push = s.get("push", {})
    b = s.get("budget", {})
    m = s.get("metrics", {})
    lines = [
        f"agent pid {s.get('pid')} on {s.get('hostname')}, up {s.get('uptime_s')} s, "
        f"config {s.get('config')}",
        f"store    {s['store']['url']} ({s['store']['protocol']}), last push "
        f"{_ago(push.get('last_push_ok_ns', 0))}"
        + (f", last error: {push['last_error']}" if push.get("last_error") else ""),
        f"spool    {push.get('spool_windows', 0)} windows, {push.get('spool_bytes', 0)} bytes, "
        f"{push.get('spool_dropped', 0)} dropped at the bound",
        f"windows  {m.get('windows_pushed', 0):.0f} pushed, {m.get('windows_spooled', 0):.0f} "
        f"spooled, {m.get('windows_dropped', 0):.0f} dropped; {m.get('samples', 0):.0f} samples",
        f"budget   cpu {b.get('cpu_percent')}% of {b.get('max_cpu_percent')}%, rss "
        f"{b.get('rss_mb')} MiB of {b.get('max_memory_mb')} MiB, rates x{b.get('rate_scale')}"
        + (f", dropped {','.join(b['dropped_collectors'])}" if b.get("dropped_collectors") else "")
        + (f", {len(b['shed_targets'])} targets shed" if b.get("shed_targets") else ""),
    ]
    for a in b.get("actions", [])[-5:]:
        lines.append(f"         {_ago(a['at_ns'])}: {a['detail']}")
    for h in s.get("shared_collectors", []):
        lines.append(
            f"host     {h['name']} {h['state']} {h['rate_hz']} Hz"
            + (f" ({h['error']})" if h.get("error") else "")
        )
    targets = s.get("targets", [])
    lines.append(f"targets  {len(targets)}")
    lines.append(f"  {'PID':>7}  {'SERVICE':<24} {'STATE':<8} {'SAMPLES':>8}  COLLECTORS")
    for t in targets:
        cols = ", ".join(f"{c['name']} {c['state']} {c['rate_hz']:g}Hz" for c in t["collectors"])
        lines.append(
            f"  {t['pid']:>7}  {t['service_name'][:24]:<24} {t['state']:<8} "
            f"{t['samples']:>8}  {cols}" + (f"  [{t['error']}]" if t["error"] else "")
        )
    for e in s.get("exited", [])[-5:]:
        lines.append(
            f"  exited pid {e['pid']} ({e['service_name']}) {_ago(e['at_ns'])}: {e['reason']}"
        )
    return "\n".join(lines)


def _install(args: argparse.Namespace) -> int:
    from hostprof import service

    unit_dir = args.unit_dir or service.DEFAULT_UNIT_DIR
    reload_systemd = unit_dir == service.DEFAULT_UNIT_DIR
    if args.uninstall:
        path = service.uninstall(unit_dir, reload_systemd)
        print(f"removed {path}" if path else f"no {service.UNIT_NAME} in {unit_dir}")
        return 0
    config_mod.load(args.config)  # refuse to install a unit that would fail to start
    path = service.install(unit_dir, os.path.abspath(args.config), reload_systemd=reload_systemd)
    print(f"wrote {path}")
    print("start it with: systemctl enable --now hostprof-agent")
    return 0


_SECRETS = ("basic_password", "bearer_token")


def _jsonable(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {
            f.name: "***"
            if f.name in _SECRETS and getattr(obj, f.name)
            else _jsonable(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in obj):
            return {k: _jsonable(v) for k, v in obj}
        return [_jsonable(x) for x in obj]
    return obj
