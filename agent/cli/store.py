"""Run the embedded profile store (Pyroscope-compatible ingest and query, web UI).

subcommands:
  serve   run the store's HTTP server (ingest, query API, web flamegraph UI)
  ls      list the services and profile types in a store's data folder
  query   print a merged profile from a store's data folder as folded stacks

examples:
  hostprof store serve                      127.0.0.1:4040, data in ~/.local/share/hostprof/store
  hostprof store serve --data /var/lib/hostprof --retention 14d
  hostprof store serve --listen 0.0.0.0:4040 --token "$TOKEN"    (off loopback: token needed)
  hostprof store ls --data /var/lib/hostprof
  hostprof store query 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app"}'

Point the pyroscope-io SDK (server_address="http://127.0.0.1:4040") or 'hostprof agent' at it,
then open http://127.0.0.1:4040/ in a browser. The HTTP API is described in docs/store-api.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import sys
from pathlib import Path
from typing import Tuple

from hostprof._errors import DependencyError
from hostprof._errors import UsageError
from hostprof.cli._common import Command

DEFAULT_LISTEN = "127.0.0.1:4040"


def default_data_dir() -> str:
    """``$XDG_DATA_HOME/hostprof/store`` (``~/.local/share/hostprof/store``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return os.path.join(base, "hostprof", "store")


def parse_listen(text: str) -> Tuple[str, int]:
    """Parses ``host:port`` (``[::1]:4040`` for IPv6)."""
    m = re.match(r"^\[?([^\]]*?)\]?:(\d+)$", text.strip())
    if not m:
        raise UsageError(f"--listen {text!r} is not host:port", "for example 127.0.0.1:4040")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range")
    return m.group(1) or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_duration(text: str) -> int:
    """Parses ``7d``, ``12h``, ``30m``, ``3600s`` or ``0`` (keep forever) into seconds."""
    m = re.match(r"^(\d+)\s*([smhdw]?)$", text.strip())
    if not m:
        raise UsageError(f"bad duration {text!r}", "use e.g. 7d, 12h or 0 to keep everything")
    mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * mult


def _size(text: str) -> int:
    m = re.match(r"^(\d+)\s*([kKmMgG]?)i?[bB]?$", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 16M)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def _die_with_parent(parent: int) -> None:
    """Decoder-process initializer: exit when the server dies, even by SIGKILL (Linux)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the pool's own broken-pipe handling still ends the worker later
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(0)


def _decoder_pool(workers: int):
    """A process pool for push decoding, started and warmed up (None for in-process)."""
    if workers < 0:
        workers = (os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
    if workers == 0:
        return None
    import concurrent.futures
    import multiprocessing

    # spawn, not fork: the server already runs threads (the store writer) when this starts.
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    from hostprof.store.decode import warm_up

    for fut in [pool.submit(warm_up) for _ in range(workers)]:
        fut.result(timeout=60)
    return pool


class StoreCommand(Command):
    __doc__ = __doc__

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="store_command", metavar="<subcommand>")
        serve = sub.add_parser("serve", help="run the store's HTTP server")
        serve.add_argument(
            "--listen", default=DEFAULT_LISTEN, help="host:port (default %(default)s)"
        )
        self._data(serve)
        serve.add_argument(
            "--token",
            default=os.environ.get("HOSTPROF_STORE_TOKEN", ""),
            help="require this bearer token or basic-auth password (env HOSTPROF_STORE_TOKEN)",
        )
        serve.add_argument("--retention", default="7d", help="keep this much data (default 7d)")
        serve.add_argument(
            "--insecure",
            action="store_true",
            help="allow a non-loopback --listen without a token",
        )
        serve.add_argument("--max-body", type=_size, default="16M", help="request body cap")
        serve.add_argument(
            "--max-inflated", type=_size, default="64M", help="cap on decompressed payloads"
        )
        serve.add_argument(
            "--decode-workers",
            type=int,
            default=0,
            metavar="N",
            help="decode pushes in N extra processes (default 0: in the server process, which "
            "is faster on small hosts since decoding moved to C; only worth trying with many "
            "cores; -1: one per CPU)",
        )
        serve.add_argument("--log-level", default="warning", help="uvicorn log level")
        ls = sub.add_parser("ls", help="list services and profile types")
        self._data(ls)
        ls.add_argument("--tenant", default="anonymous")
        q = sub.add_parser("query", help="print a merged profile as folded stacks")
        q.add_argument(
            "query", help='e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app"}'
        )
        self._data(q)
        q.add_argument("--from", dest="start", default="now-1h")
        q.add_argument("--until", dest="end", default="now")
        q.add_argument("--tenant", default="anonymous")

    @staticmethod
    def _data(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data",
            default=os.environ.get("HOSTPROF_STORE_DATA") or default_data_dir(),
            help="data folder (default %(default)s)",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        cmd = getattr(args, "store_command", None)
        if cmd == "serve":
            return self.serve(args)
        if cmd == "ls":
            return self.ls(args)
        if cmd == "query":
            return self.query(args)
        parser.print_help()
        return 2

    def serve(self, args: argparse.Namespace) -> int:
        host, port = parse_listen(args.listen)
        if not is_loopback(host) and not args.token and not args.insecure:
            raise UsageError(
                f"refusing to listen on {host} without a token",
                "pass --token T (or HOSTPROF_STORE_TOKEN), or --insecure to accept anyone",
            )
        retention = parse_duration(args.retention)
        try:
            import uvicorn
        except ImportError:
            raise DependencyError(
                "uvicorn is not installed", "pip install 'hostprof' with its dependencies"
            ) from None
        from hostprof.store.backend import SQLiteBackend
        from hostprof.store.server import Limits
        from hostprof.store.server import create_app

        db = Path(args.data) / "store.db"
        backend = SQLiteBackend(db, retention=retention)
        decoders = _decoder_pool(args.decode_workers)
        app = create_app(backend, args.token, Limits(args.max_body, args.max_inflated), decoders)
        logging.basicConfig(level=logging.WARNING, format="hostprof store: %(message)s")
        print(f"hostprof store: listening on http://{args.listen} (data {db})", file=sys.stderr)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=args.log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        try:
            server.run()
        finally:
            if decoders is not None:
                decoders.shutdown(wait=True, cancel_futures=True)
            backend.close()
        return 0 if server.started else 7

    def _open(self, args: argparse.Namespace):
        from hostprof.store.backend import SQLiteBackend

        return SQLiteBackend(Path(args.data) / "store.db", readonly=True)

    def ls(self, args: argparse.Namespace) -> int:
        backend = self._open(args)
        try:
            services = {}
            for s in backend.series(args.tenant, None, 0, 2**62):
                services.setdefault(s.labels.get("service_name", ""), set()).add(s.profile_type)
            for name in sorted(services):
                print(name)
                for ptype in sorted(services[name]):
                    print(f"  {ptype}")
            st = backend.stats()
            print(
                f"# {st['series']} series, {st['windows']} windows, {st['samples']} samples, "
                f"{st['stacks']} distinct stacks, {st['bytes'] / 1e6:.1f} MB",
                file=sys.stderr,
            )
        finally:
            backend.close()
        return 0

    def query(self, args: argparse.Namespace) -> int:
        from hostprof.store.query import parse_query
        from hostprof.store.query import parse_time

        q = parse_query(args.query)
        start = parse_time(args.start, "now-1h")
        # --until is inclusive for people ("until now" includes what landed this second);
        # the backend's ranges are [start, end).
        end = parse_time(args.end, "now") + 1
        backend = self._open(args)
        try:
            ids = [s.id for s in backend.series(args.tenant, q, start, end)]
            values = backend.merge(ids, start, end)
            names = backend.stack_names(sorted(values))
            lines = sorted(f"{';'.join(names[sid])} {v}" for sid, v in values.items() if v)
        finally:
            backend.close()
        sys.stdout.write("".join(line + "\n" for line in lines))
        return 0
