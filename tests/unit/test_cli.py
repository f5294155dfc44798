"""The CLI frame: every subcommand is registered, parses, and teaches through --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hostprof.cli import COMMANDS
from hostprof.cli import main
from hostprof.cli import parse


def test_all_subcommands_are_registered() -> None:
    assert [name for name, _ in COMMANDS] == [
        "record",
        "top",
        "dump",
        "snapshot",
        "agent",
        "store",
        "convert",
    ]


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_every_subcommand_has_help_with_text(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"hostprof {name}" in out
    assert len(out.splitlines()) > 3


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "examples:" in capsys.readouterr().out


def test_module_entry_point_runs_without_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hostprof", "convert", "/nonexistent", "-o", "/tmp/x.pprof"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0].startswith("hostprof: error:")
    assert out.stderr.splitlines()[1].startswith("hint:")
