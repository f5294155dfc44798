"""Agent config parsing: pure from_toml, defaults, one-line errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostprof._errors import UsageError
from hostprof.config import DEFAULT_RULE
from hostprof.config import AgentConfig
from hostprof.config import from_toml
from hostprof.config import load
from hostprof.config import valid_label_name
from hostprof.discovery import ProcessFacts
from hostprof.discovery import choose

ROOT = Path(__file__).resolve().parents[2]


def test_empty_config_gives_defaults() -> None:
    cfg = from_toml("")
    assert cfg == AgentConfig()
    assert cfg.store.url == "http://127.0.0.1:4040"
    assert cfg.store.protocol == "push"
    assert cfg.rules == (DEFAULT_RULE,)
    assert cfg.budget.max_cpu_percent == 1.0
    assert cfg.window_s == 10.0


def test_example_file_parses_and_matches_documented_defaults() -> None:
    cfg = load(str(ROOT / "examples" / "agent.toml"))
    assert [r.name for r in cfg.rules] == ["ignore-tools", "web", "everything-else-python"]
    web = cfg.rules[1]
    assert web.service_name == "web" and web.user == "www-data" and web.priority == 10
    assert {c.name: c.rate_hz for c in web.collectors} == {
        "python": 100.0,
        "cpu": 99.0,
        "offcpu": 0.0,
        "gc": 0.0,
    }
    assert dict(web.labels) == {"team": "storefront"}
    d = AgentConfig()
    assert (cfg.window_s, cfg.spool_max_mb, cfg.budget, cfg.store.url) == (
        d.window_s,
        d.spool_max_mb,
        d.budget,
        d.store.url,
    )


def test_full_store_section() -> None:
    cfg = from_toml(
        """
        [store]
        url = "https://profiles.example.com/"
        protocol = "ingest"
        tenant = "team-a"
        basic_auth = { user = "u", password = "p" }
        headers = { X-Extra = "1" }
        """
    )
    assert cfg.store.url == "https://profiles.example.com"
    assert (cfg.store.protocol, cfg.store.tenant) == ("ingest", "team-a")
    assert (cfg.store.basic_user, cfg.store.basic_password) == ("u", "p")
    assert cfg.store.headers == (("X-Extra", "1"),)


@pytest.mark.parametrize(
    "text, key",
    [
        ("[budget]\nmax_cpu_percent = 'x'", "budget.max_cpu_percent"),
        ("[budget]\nmax_cpu_percent = 0", "budget.max_cpu_percent"),
        ("[store]\nprotocol = 'grpc'", "store.protocol"),
        ("[store]\nurl = 'localhost:4040'", "store.url"),
        ("[store]\nbearer_token = 't'\nbasic_auth = {user = 'u'}", "store.bearer_token"),
        ("[store]\nheaders = { 'Bad Header' = 'x' }", "store.headers.Bad Header"),
        ("[agent]\nwindow = 10", "agent.window"),
        ("[agent]\nhost_cpu = 'maybe'", "agent.host_cpu"),
        ("[agent]\nmetrics_addr = 'nope'", "agent.metrics_addr"),
        ("[labels]\n'bad-name' = 'x'", "labels.bad-name"),
        ("[labels]\nservice_name = 'x'", "labels.service_name"),
        ("[[rule]]\ncmdline = '('", "rule[0].cmdline"),
        ("[[rule]]\npids = [0]", "rule[0].pids"),
        ("[[rule]]\naction = 'maybe'", "rule[0].action"),
        ("[[rule]]\ncollectors = { perf = true }", "rule[0].collectors.perf"),
        (
            "[[rule]]\ncollectors = { python = { rate_hz = -1 } }",
            "rule[0].collectors.python.rate_hz",
        ),
        ("[[rule]]\nlabels = { 'a-b' = 'x' }", "rule[0].labels.a-b"),
        ("[[rule]]\nfoo = 1", "rule[0].foo"),
        ("[nope]", "nope"),
    ],
)
def test_errors_are_one_line_and_name_the_key(text: str, key: str) -> None:
    with pytest.raises(UsageError) as info:
        from_toml(text)
    msg = info.value.message
    assert "\n" not in msg
    assert msg.startswith(f"{key}:"), msg
    assert info.value.hint


def test_invalid_toml_is_one_line() -> None:
    with pytest.raises(UsageError) as info:
        from_toml("[store\nurl=")
    assert info.value.message.startswith("invalid TOML")


def test_only_excludes_refine_the_default_rule() -> None:
    cfg = from_toml("[[rule]]\naction='exclude'\ncmdline='pip'")
    assert cfg.rules[-1] == DEFAULT_RULE
    facts = ProcessFacts(
        10, 1, "/usr/bin/python3.11", ("python3", "-m", "pip"), 0, "root", "/", "", "", True
    )
    assert choose(cfg.rules, facts) is None
    facts2 = ProcessFacts(
        11,
        1,
        "/usr/bin/python3.11",
        ("python3", "app.py"),
        0,
        "root",
        "/system.slice/shop.service",
        "shop",
        "",
        True,
    )
    match = choose(cfg.rules, facts2)
    assert match is not None and match.service_name == "shop"


def test_service_name_order_rule_unit_container_exe() -> None:
    cfg = from_toml("[[rule]]\nname='a'\nexe='python'\n[[rule]]\nname='b'\npython_only=false")
    base = dict(
        pid=1,
        start_ticks=1,
        exe="/usr/bin/python3.11",
        cmdline=("python3", "w.py"),
        uid=0,
        user="root",
        cgroup="/",
        systemd_unit="",
        container_id="",
        is_python=True,
    )
    assert choose(cfg.rules, ProcessFacts(**base)).service_name == "w"
    unit = dict(base, systemd_unit="billing")
    assert choose(cfg.rules, ProcessFacts(**unit)).service_name == "billing"
    cont = dict(base, container_id="0123456789abcdef" * 4)
    assert choose(cfg.rules, ProcessFacts(**cont)).service_name == "container-0123456789ab"
    named = from_toml("[[rule]]\nservice_name='api'")
    assert choose(named.rules, ProcessFacts(**unit)).service_name == "api"
    notpy = dict(base, exe="/usr/bin/nginx", cmdline=("nginx",), is_python=False)
    assert choose(cfg.rules, ProcessFacts(**notpy)).service_name == "nginx"


def test_label_names() -> None:
    assert valid_label_name("service.name") and valid_label_name("_x1")
    assert not valid_label_name("1x") and not valid_label_name("a-b")
    assert not valid_label_name("__name__")


def test_check_config_cli_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "a.toml"
    bad.write_text("[budget]\nmax_memory_mb = -3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hostprof", "agent", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"hostprof: error: {bad}: budget.max_memory_mb:"), lines
    assert lines[1].startswith("hint:")
    assert "Traceback" not in proc.stderr
