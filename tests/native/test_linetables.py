"""pyreader.c's line-table decoders against each interpreter's own answer.

GIVEN every code object of a few stdlib modules, compiled by the target interpreter itself,
WHEN pyreader.c decodes the line of every instruction offset from the raw line table,
THEN it matches what that interpreter reports (``co_lines`` on 3.10+, ``dis.findlinestarts``
on 3.9).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pythons import sampler_pythons

from hostprof.native._testing import LINES_310
from hostprof.native._testing import LINES_LNOTAB
from hostprof.native._testing import LINES_LOCATIONS
from hostprof.native._testing import code_lines

# Runs inside the target interpreter: prints, per code object, the raw line table and the
# (byte offset -> line) pairs the interpreter itself reports.
_DUMPER = r"""
import dis, json, sys, types
import json.decoder, json.encoder, textwrap, argparse, threading
out = []
def walk(code):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from walk(c)
def module_codes(mod):
    src = open(mod.__file__).read()
    return walk(compile(src, mod.__file__, "exec"))
for mod in (json.decoder, json.encoder, textwrap, argparse, threading):
    for code in module_codes(mod):
        if sys.version_info >= (3, 10):
            table = code.co_linetable
            pairs = []
            for start, end, line in code.co_lines():
                if line is not None:
                    for off in range(start, end, 2):
                        pairs.append((off, line))
        else:
            table = code.co_lnotab
            starts = list(dis.findlinestarts(code))
            pairs = []
            for i, (off, line) in enumerate(starts):
                end = starts[i + 1][0] if i + 1 < len(starts) else len(code.co_code)
                for o in range(off, end, 2):
                    pairs.append((o, line))
        out.append([code.co_firstlineno, table.hex(), pairs])
print(json.dumps([list(sys.version_info[:2]), out]))
"""


@pytest.mark.parametrize("name", sorted(sampler_pythons()))
def test_line_decoder_matches_interpreter(name: str) -> None:
    # GIVEN the interpreter's own view of its line tables
    python = sampler_pythons()[name]
    proc = subprocess.run([python, "-c", _DUMPER], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (_major, minor), codes = json.loads(proc.stdout)
    kind = LINES_LNOTAB if minor == 9 else LINES_310 if minor == 10 else LINES_LOCATIONS
    checked = mismatched = 0
    for firstlineno, table_hex, pairs in codes:
        if not pairs:
            continue
        offsets = [off for off, _ in pairs]
        # WHEN pyreader.c decodes the same offsets
        got = code_lines(kind, firstlineno, bytes.fromhex(table_hex), offsets)
        # THEN every line agrees
        for (_off, want), have in zip(pairs, got):
            checked += 1
            if have != want:
                mismatched += 1
    assert checked > 5000, f"only {checked} offsets checked"
    assert mismatched == 0, f"{mismatched} of {checked} offsets decoded to the wrong line"
