"""Output formats. One module per format, each with ``NAME``, ``EXTENSIONS``, ``write(profile,
stream)`` and, where the format can be read back, ``read(data) -> Profile``."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict
from typing import Optional

from hostprof._errors import UsageError

FORMATS = ("folded", "pprof", "speedscope", "html", "svg")
"""Every format, by name."""

_EXTENSIONS: Dict[str, str] = {
    ".speedscope.json": "speedscope",
    ".speedscope": "speedscope",
    ".pb.gz": "pprof",
    ".pprof": "pprof",
    ".pb": "pprof",
    ".folded": "folded",
    ".collapsed": "folded",
    ".txt": "folded",
    ".html": "html",
    ".htm": "html",
    ".svg": "svg",
}


def get(name: str) -> ModuleType:
    """Returns the encoder module for a format name."""
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}", f"choose one of: {', '.join(FORMATS)}")
    return importlib.import_module(f"hostprof.encoders.{name}")


def format_for_path(path: str, explicit: Optional[str] = None) -> str:
    """The format named by ``explicit``, else guessed from the file name's extension."""
    if explicit:
        get(explicit)
        return explicit
    lower = path.lower()
    for ext, name in _EXTENSIONS.items():
        if lower.endswith(ext):
            return name
    raise UsageError(
        f"cannot tell the format of {path!r} from its extension",
        f"use one of {', '.join(sorted(_EXTENSIONS))} or pass --format {{{','.join(FORMATS)}}}",
    )


def sniff(data: bytes) -> str:
    """Guesses the format of input bytes: pprof (gzip or protobuf), speedscope, or folded."""
    if data[:2] == b"\x1f\x8b":
        return "pprof"
    head = data[:64].lstrip()
    if head.startswith(b"{"):
        return "speedscope"
    # Folded lines may start with "<" too ("<module> (app.py:1);...", "<gc> 3"): only markup
    # openings count as HTML/SVG.
    if head.lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
        return "html"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "pprof"
    return "folded"
