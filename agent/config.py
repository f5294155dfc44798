"""The agent's configuration: frozen dataclasses parsed from TOML by a pure function.

``from_toml(text)`` never touches the file system or the network, so tests parse strings.
Every error is one line that names the offending key, e.g.
``budget.max_cpu_percent: must be a number > 0, got 'x'``. See ``examples/agent.toml`` for a
commented example of every key.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import sys
from typing import Any
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple

from hostprof._errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

DEFAULT_PATH = "/etc/hostprof/agent.toml"
DEFAULT_STORE_URL = "http://127.0.0.1:4040"
COLLECTORS = ("python", "cpu", "offcpu", "syscalls", "gc")
"""Collector names a rule may enable, in the order the budget drops them (last first)."""

DEFAULT_RATES = {"python": 100.0, "cpu": 99.0, "offcpu": 0.0, "syscalls": 0.0, "gc": 0.0}
"""Default rate per collector in Hz; 0 means event driven (no sampling rate)."""

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.]*$")
"""Pyroscope accepts Prometheus label names plus dots (``service.name``)."""

_RESERVED_LABELS = {"__name__", "service_name", "hostname", "pid"}


def valid_label_name(name: str) -> bool:
    """Whether ``name`` is a valid Pyroscope label name (and not a ``__reserved__`` one)."""
    return bool(_LABEL_NAME.match(name)) and not name.startswith("__")


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """Where windows are pushed."""

    url: str = DEFAULT_STORE_URL
    """Base URL of the store (the embedded one, or Grafana Pyroscope); ``file://DIR`` writes
    each window to a folder instead (for debugging)."""
    protocol: str = "push"
    """``push`` (connect ``push.v1.PusherService/Push``) or ``ingest`` (legacy ``/ingest``)."""
    basic_user: str = ""
    """Basic-auth user (Grafana Cloud: the stack's user id)."""
    basic_password: str = ""
    """Basic-auth password or API token."""
    bearer_token: str = ""
    """Bearer token (the embedded store's ``--token``); exclusive with basic auth."""
    tenant: str = ""
    """Tenant id sent as ``X-Scope-OrgID`` (multi-tenant Pyroscope)."""
    headers: Tuple[Tuple[str, str], ...] = ()
    """Extra HTTP headers, sent on every request."""
    timeout_s: float = 5.0
    """Per-request timeout."""


@dataclasses.dataclass(frozen=True)
class CollectorSpec:
    """One collector enabled by a rule."""

    name: str
    """One of :data:`COLLECTORS`."""
    rate_hz: float
    """Requested sampling rate (0: event driven). The budget may lower it."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """A target rule. Rules are tried in order; the first whose matchers all match decides."""

    name: str
    """Rule name (shown in status; the default ``service_name`` prefix when set)."""
    action: str = "include"
    """``include`` or ``exclude``."""
    exe: Optional[str] = None
    """Regex searched in the executable path."""
    cmdline: Optional[str] = None
    """Regex searched in the command line (arguments joined by spaces)."""
    user: Optional[str] = None
    """User name or numeric uid the process runs as."""
    cgroup: Optional[str] = None
    """Regex searched in the process's cgroup path."""
    container_id: Optional[str] = None
    """Container id prefix (from the cgroup path: docker, containerd, cri-o, podman)."""
    pids: Tuple[int, ...] = ()
    """Explicit process ids."""
    python_only: bool = True
    """Match only CPython processes (the interpreter, or a program embedding libpython)."""
    service_name: str = ""
    """``service_name`` label for matched targets (else systemd unit, container, exe name)."""
    collectors: Tuple[CollectorSpec, ...] = (CollectorSpec("python", DEFAULT_RATES["python"]),)
    """Collectors to run on matched targets."""
    labels: Tuple[Tuple[str, str], ...] = ()
    """Extra static labels for matched targets."""
    priority: int = 0
    """Higher-priority targets are shed last when over budget."""

    def collector(self, name: str) -> Optional[CollectorSpec]:
        """The spec for collector ``name``, or None when the rule does not enable it."""
        for spec in self.collectors:
            if spec.name == name:
                return spec
        return None


DEFAULT_RULE = Rule(name="python")
"""With no rules configured: every CPython process, sampled by the python collector."""


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """The agent's own resource budget."""

    max_cpu_percent: float = 1.0
    """CPU the agent may use, in percent of one core (averaged over ``interval_s``)."""
    max_memory_mb: float = 256.0
    """RSS the agent may use, in MiB."""
    interval_s: float = 5.0
    """How often usage is measured and acted on."""
    min_rate_hz: float = 10.0
    """Rates are never lowered below this; targets are shed instead."""


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The whole configuration."""

    store: StoreConfig = StoreConfig()
    rules: Tuple[Rule, ...] = (DEFAULT_RULE,)
    budget: BudgetConfig = BudgetConfig()
    labels: Tuple[Tuple[str, str], ...] = ()
    """Static labels added to every series."""
    hostname: str = ""
    """The ``hostname`` label; empty means the machine's host name."""
    host_cpu: str = "auto"
    """Host-wide CPU profile (eBPF): ``auto`` (when eBPF works), ``on`` or ``off``."""
    host_cpu_rate_hz: float = 49.0
    """Sampling rate of the host-wide CPU profile."""
    window_s: float = 10.0
    """Window length; windows are aligned to the wall clock (multiples of this)."""
    discovery_interval_s: float = 2.0
    """How often processes are rescanned (a new target attaches within this)."""
    drain_interval_s: float = 10.0
    """How often collectors are drained into the current window (default: once per window;
    collectors buffer in between, and each drain has a fixed cost per target)."""
    spool_dir: str = "/var/lib/hostprof/spool"
    """Where failed pushes wait for retry."""
    spool_max_mb: float = 256.0
    """Spool bound; at the bound the oldest windows are dropped and counted."""
    retry_min_s: float = 1.0
    """First retry delay after a failed push; doubles per failure up to ``retry_max_s``."""
    retry_max_s: float = 60.0
    """Longest retry delay."""
    metrics_addr: str = "127.0.0.1:9464"
    """``host:port`` of the Prometheus ``/metrics`` endpoint; empty disables it."""
    status_socket: str = "/run/hostprof/agent.sock"
    """Unix socket that ``hostprof agent status`` reads."""
    thread_labels: bool = False
    """Add ``thread_id``/``thread_name`` sample labels (bigger payloads)."""
    pid_label: bool = True
    """Add a ``pid`` series label, so concurrent processes of one service stay apart."""

    def effective_hostname(self) -> str:
        """The configured host name, or this machine's."""
        return self.hostname or socket.gethostname()


# ---------------------------------------------------------------------------- parsing


class _Section:
    """Reads typed keys from one TOML table, remembering its dotted path for errors."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise UsageError(
                f"{path}: must be a table, got {type(data).__name__}", "see examples/agent.toml"
            )
        self.data = dict(data)
        self.path = path
        self.used: set = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name)

    def has(self, name: str) -> bool:
        return name in self.data

    def str(
        self, name: str, default: Optional[str] = None, choices: Tuple[str, ...] = ()
    ) -> Optional[str]:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise _err(self.key(name), "must be a string", value)
        if choices and value not in choices:
            raise _err(self.key(name), f"must be one of {', '.join(choices)}", value)
        return value

    def regex(self, name: str) -> Optional[str]:
        value = self.str(name)
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise _err(self.key(name), f"is not a valid regex ({exc})", value) from None
        return value

    def num(self, name: str, default: float, minimum: float = 0.0, strict: bool = True) -> float:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(
                self.key(name), f"must be a number {'>' if strict else '>='} {minimum:g}", value
            )
        if value < minimum or (strict and value == minimum):
            raise _err(
                self.key(name), f"must be a number {'>' if strict else '>='} {minimum:g}", value
            )
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise _err(self.key(name), "must be true or false", value)
        return value

    def table(self, name: str) -> _Section:
        value = self._get(name)
        return _Section(value if value is not None else {}, self.key(name))

    def labels(self, name: str) -> Tuple[Tuple[str, str], ...]:
        section = self.table(name)
        out = []
        for k, v in section.data.items():
            if not valid_label_name(k) or k in _RESERVED_LABELS:
                raise UsageError(
                    f"{section.key(k)}: {k!r} is not a valid label name",
                    "label names match [a-zA-Z_][a-zA-Z0-9_.]* and must not be __name__, "
                    "service_name, hostname or pid (set service_name on a rule)",
                )
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise _err(section.key(k), "must be a string", v)
            out.append((k, str(v)))
        return tuple(sorted(out))

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise UsageError(
                f"{self.key(unknown[0])}: unknown key",
                "see examples/agent.toml for the keys this version reads",
            )


def _err(key: str, what: str, value: Any) -> UsageError:
    return UsageError(f"{key}: {what}, got {value!r}", "see examples/agent.toml")


def _parse_store(s: _Section) -> StoreConfig:
    url = s.str("url", DEFAULT_STORE_URL) or DEFAULT_STORE_URL
    if not re.match(r"^(https?|file)://", url):
        raise _err(s.key("url"), "must start with http://, https:// or file://", url)
    protocol = s.str("protocol", "push", ("push", "ingest")) or "push"
    basic = s.table("basic_auth")
    user = basic.str("user", "") or ""
    password = basic.str("password", "") or ""
    basic.check_unknown()
    token = s.str("bearer_token", "") or ""
    if token and (user or password):
        raise UsageError(
            f"{s.key('bearer_token')}: cannot be combined with basic_auth",
            "use either basic_auth or bearer_token",
        )
    headers_section = s.table("headers")
    headers = []
    for k, v in headers_section.data.items():
        if not re.match(r"^[A-Za-z0-9-]+$", k):
            raise _err(headers_section.key(k), "is not a valid HTTP header name", k)
        if not isinstance(v, str) or "\n" in v or "\r" in v:
            raise _err(headers_section.key(k), "must be a one-line string", v)
        headers.append((k, v))
    cfg = StoreConfig(
        url=url.rstrip("/"),
        protocol=protocol,
        basic_user=user,
        basic_password=password,
        bearer_token=token,
        tenant=s.str("tenant", "") or "",
        headers=tuple(headers),
        timeout_s=s.num("timeout_s", 5.0),
    )
    s.check_unknown()
    return cfg


def _parse_collectors(s: _Section) -> Tuple[CollectorSpec, ...]:
    specs = []
    for name in s.data:
        if name not in COLLECTORS:
            raise UsageError(
                f"{s.key(name)}: unknown collector", f"collectors are: {', '.join(COLLECTORS)}"
            )
        value = s.data[name]
        s.used.add(name)
        if value is False:
            continue
        if value is True:
            value = {}
        sub = _Section(value, s.key(name))
        rate = sub.num("rate_hz", DEFAULT_RATES[name], strict=False)
        if rate > 10000:
            raise _err(sub.key("rate_hz"), "must be <= 10000", rate)
        sub.check_unknown()
        specs.append(CollectorSpec(name, rate))
    return tuple(specs)


def _parse_rule(s: _Section, index: int) -> Rule:
    name = s.str("name", f"rule{index}") or f"rule{index}"
    pids_raw = s._get("pids")
    pids: Tuple[int, ...] = ()
    if pids_raw is not None:
        if not isinstance(pids_raw, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pids_raw
        ):
            raise _err(s.key("pids"), "must be a list of positive integers", pids_raw)
        pids = tuple(pids_raw)
    user_raw = s._get("user")
    if user_raw is not None and not isinstance(user_raw, (str, int)):
        raise _err(s.key("user"), "must be a user name or uid", user_raw)
    collectors = (
        _parse_collectors(s.table("collectors")) if s.has("collectors") else DEFAULT_RULE.collectors
    )
    service = s.str("service_name", "") or ""
    rule = Rule(
        name=name,
        action=s.str("action", "include", ("include", "exclude")) or "include",
        exe=s.regex("exe"),
        cmdline=s.regex("cmdline"),
        user=None if user_raw is None else str(user_raw),
        cgroup=s.regex("cgroup"),
        container_id=s.str("container_id"),
        pids=pids,
        python_only=s.bool("python_only", True),
        service_name=service,
        collectors=collectors,
        labels=s.labels("labels"),
        priority=int(s.num("priority", 0, minimum=-1e9, strict=False)),
    )
    s.check_unknown()
    return rule


def from_toml(text: str) -> AgentConfig:
    """Parses a TOML configuration (pure: no file or network access).

    Raises:
        UsageError: invalid TOML or an invalid key; the message names the key.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid TOML: {exc}", "check the file's syntax") from None
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> AgentConfig:
    """Builds a configuration from parsed TOML data (see :func:`from_toml`)."""
    root = _Section(data, "")
    store = _parse_store(root.table("store"))
    agent = root.table("agent")
    budget_s = root.table("budget")
    budget = BudgetConfig(
        max_cpu_percent=budget_s.num("max_cpu_percent", 1.0),
        max_memory_mb=budget_s.num("max_memory_mb", 256.0),
        interval_s=budget_s.num("interval_s", 5.0),
        min_rate_hz=budget_s.num("min_rate_hz", 10.0),
    )
    budget_s.check_unknown()
    rules_raw = root._get("rule")
    rules: List[Rule] = []
    if rules_raw is not None:
        if not isinstance(rules_raw, list):
            raise _err("rule", "must be an array of tables ([[rule]])", rules_raw)
        for i, r in enumerate(rules_raw):
            rules.append(_parse_rule(_Section(r, f"rule[{i}]"), i))
    if rules and not any(r.action == "include" for r in rules):
        # Only excludes: they refine the default rule.
        rules.append(DEFAULT_RULE)
    window = agent.num("window_s", 10.0)
    cfg = AgentConfig(
        store=store,
        rules=tuple(rules) if rules else (DEFAULT_RULE,),
        budget=budget,
        labels=root.labels("labels"),
        hostname=agent.str("hostname", "") or "",
        host_cpu=agent.str("host_cpu", "auto", ("auto", "on", "off")) or "auto",
        host_cpu_rate_hz=agent.num("host_cpu_rate_hz", 49.0),
        window_s=window,
        discovery_interval_s=agent.num("discovery_interval_s", 2.0),
        drain_interval_s=agent.num("drain_interval_s", window),
        spool_dir=agent.str("spool_dir", AgentConfig.spool_dir) or AgentConfig.spool_dir,
        spool_max_mb=agent.num("spool_max_mb", 256.0),
        retry_min_s=agent.num("retry_min_s", 1.0),
        retry_max_s=agent.num("retry_max_s", 60.0),
        metrics_addr=agent.str("metrics_addr", AgentConfig.metrics_addr) or "",
        status_socket=agent.str("status_socket", AgentConfig.status_socket)
        or AgentConfig.status_socket,
        thread_labels=agent.bool("thread_labels", False),
        pid_label=agent.bool("pid_label", True),
    )
    if cfg.metrics_addr and not re.match(r"^[^:]*:\d+$", cfg.metrics_addr):
        raise _err(
            "agent.metrics_addr", "must be host:port (or empty to disable)", cfg.metrics_addr
        )
    if cfg.drain_interval_s > cfg.window_s:
        raise _err("agent.drain_interval_s", "must not exceed agent.window_s", cfg.drain_interval_s)
    agent.check_unknown()
    root.check_unknown()
    return cfg


def load(path: str) -> AgentConfig:
    """Reads and parses a configuration file; a missing default file means defaults.

    Raises:
        UsageError: unreadable file or invalid configuration (message names file and key).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if path == DEFAULT_PATH:
            return AgentConfig()
        raise UsageError(
            f"config file {path} does not exist", "pass --config FILE, or copy examples/agent.toml"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read config file {path}: {exc.strerror}", "check the path and its permissions"
        ) from None
    try:
        return from_toml(text)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}", exc.hint) from None


def with_overrides(cfg: AgentConfig, **changes: Any) -> AgentConfig:
    """A copy with top-level fields replaced; ``store_url`` replaces ``store.url``."""
    url = changes.pop("store_url", None)
    if url:
        if not re.match(r"^(https?|file)://", url):
            raise _err("--store", "must start with http://, https:// or file://", url)
        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, url=url.rstrip("/")))
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(cfg, **changes) if changes else cfg


def labels_dict(pairs: Tuple[Tuple[str, str], ...]) -> Dict[str, str]:
    """Label pairs as a dict."""
    return dict(pairs)
