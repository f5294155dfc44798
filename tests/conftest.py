"""Shared fixtures: privileges, capability gates, target processes.

Capability gates: a test that needs something this machine may lack (root, bcc, chroot
interpreters, Chromium, go) calls ``require(...)``. It skips when the thing is missing, except
that with HOSTPROF_REQUIRE_BPF=1 (set by CI) a missing eBPF capability fails the test instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
REQUIRE_BPF = os.environ.get("HOSTPROF_REQUIRE_BPF") == "1"


def bpf_unavailable_reason() -> str | None:
    """Why eBPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "eBPF tests need root"
    try:
        import bcc  # noqa: F401
    except Exception as exc:  # ImportError, or libbcc failing to load
        return f"bcc is not importable ({exc}); run scripts/setup.sh"
    return None


def require_bpf() -> None:
    """Skips (or, under HOSTPROF_REQUIRE_BPF=1, fails) when eBPF cannot run."""
    reason = bpf_unavailable_reason()
    if reason:
        if REQUIRE_BPF:
            pytest.fail(f"HOSTPROF_REQUIRE_BPF=1 but {reason}")
        pytest.skip(reason)


def require_tool(name: str) -> str:
    """Returns the path of an executable, or skips the test."""
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """A folder for test outputs worth keeping (screenshots, sample files)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def bpf() -> None:
    """Gate for eBPF tests."""
    require_bpf()
