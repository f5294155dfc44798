"""Type stub for hostprof.native._testing (test-only entry points into pyreader.c)."""

from typing import Iterable
from typing import List

LINES_LNOTAB: int
LINES_310: int
LINES_LOCATIONS: int

def code_lines(
    lines_kind: int, firstlineno: int, linetable: bytes, offsets: Iterable[int]
) -> List[int]: ...
