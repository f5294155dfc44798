"""Interpreters the sampling-core tests run against: tests/utils.installed_pythons() plus
pyenv's 3.10, 3.12 and 3.13.0, forky's 3.13 and the free-threaded 3.13t chroot build, where
they exist."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import PYTHONS_DIR
from utils import installed_pythons

_EXTRA = {
    "3.10-pyenv": str(Path.home() / ".pyenv/versions/3.10.13/bin/python3.10"),
    "3.12-pyenv": str(Path.home() / ".pyenv/versions/3.12.1/bin/python3.12"),
    "3.13t": str(PYTHONS_DIR / "bin/python3.13t"),
    # Two more 3.13 patch releases: _Py_DebugOffsets must make them work unchanged.
    "3.13.0-pyenv": str(Path.home() / ".pyenv/versions/3.13.0/bin/python3.13"),
    "3.13-forky": str(PYTHONS_DIR / "bin/python3.13-forky"),
}


def sampler_pythons() -> Dict[str, str]:
    """Short name -> interpreter path, for every one installed here."""
    out = dict(installed_pythons())
    out.update({k: v for k, v in _EXTRA.items() if os.path.exists(v)})
    return out


def is_free_threaded(name: str) -> bool:
    """Free-threaded builds have no GIL and no threading-name lookup."""
    return name == "3.13t"
