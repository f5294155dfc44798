"""Parses ``/proc/PID/maps`` and opens the files a process has mapped.

Where a target runs decides how its binaries are reached from the host (see
/work/shared/README.md): a plain chroot shows host paths in its maps; a container with its own
mount namespace shows its own paths, reachable as ``/proc/PID/root/<path>``; and
``/proc/PID/map_files/<start>-<end>`` works in both (root only). :func:`open_mapped_file` tries
them in that order and checks the inode, so a same-named host file is never mistaken for the
target's.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import BinaryIO
from typing import Dict
from typing import List
from typing import Optional

from hostprof._errors import PermissionDeniedError
from hostprof._errors import ProcessGoneError


@dataclasses.dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    """First address of the mapping."""
    end: int
    """One past the last address."""
    perms: str
    """Permission string, e.g. ``r-xp``."""
    offset: int
    """File offset the mapping starts at."""
    dev: str
    """Device as ``major:minor`` (hex)."""
    inode: int
    """Inode of the mapped file (0 for anonymous mappings)."""
    path: str
    """Path as the kernel shows it (may be ``[heap]``, ``[stack]``, or end in `` (deleted)``)."""

    @property
    def is_file(self) -> bool:
        """True for mappings of a regular file."""
        return self.inode != 0 and self.path.startswith("/")

    @property
    def executable(self) -> bool:
        """True when the mapping is executable."""
        return "x" in self.perms

    @property
    def basename(self) -> str:
        """The file name without directories."""
        return os.path.basename(self.path.replace(" (deleted)", ""))

    def load_bias(self, first_load_vaddr: int = 0) -> int:
        """Runtime address minus link-time address for the object this mapping belongs to.

        Pass the object's first PT_LOAD ``vaddr - offset`` (see
        :attr:`hostprof.elf.ElfFile.first_load_vaddr`) and call it on the mapping with file
        offset 0 (the object's first mapping).
        """
        return self.start - self.offset - first_load_vaddr


def read_maps(pid: int) -> List[Mapping]:
    """All mappings of ``pid``, in address order.

    Raises:
        ProcessGoneError: no such process.
        PermissionDeniedError: the maps are not readable by this user.
    """
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProcessGoneError(
            f"no process with pid {pid}", "check the pid with 'ps -p PID'"
        ) from None
    except PermissionError:
        raise PermissionDeniedError(
            f"permission denied reading /proc/{pid}/maps",
            "run as root or with CAP_SYS_PTRACE; for same-user targets check Yama "
            "(sysctl kernel.yama.ptrace_scope=0)",
        ) from None
    return parse_maps(text)


def parse_maps(text: str) -> List[Mapping]:
    """Parses the text of a maps file."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5].strip() if len(parts) == 6 else ""
        out.append(Mapping(start, end, parts[1], int(parts[2], 16), parts[3], int(parts[4]), path))
    return out


def objects(maps: List[Mapping]) -> Dict[str, List[Mapping]]:
    """Groups file mappings by path, keeping address order."""
    out: Dict[str, List[Mapping]] = {}
    for m in maps:
        if m.is_file:
            out.setdefault(m.path, []).append(m)
    return out


def open_mapped_file(pid: int, mapping: Mapping) -> BinaryIO:
    """Opens the file behind ``mapping`` as the target sees it.

    Tries the maps path, then ``/proc/PID/root/<path>``, then ``/proc/PID/map_files/<range>``,
    accepting a candidate only if its inode matches the mapping's.

    Raises:
        ProcessGoneError: the process exited.
        FileNotFoundError: no candidate could be opened.
    """
    path = mapping.path.replace(" (deleted)", "")
    candidates = [
        path,
        f"/proc/{pid}/root{path}",
        f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}",
    ]
    last: Optional[OSError] = None
    for cand in candidates:
        try:
            f = open(cand, "rb")  # noqa: SIM115 - returned to the caller
        except OSError as exc:
            last = exc
            continue
        if os.fstat(f.fileno()).st_ino == mapping.inode:
            return f
        f.close()
    if not os.path.exists(f"/proc/{pid}"):
        raise ProcessGoneError(f"process {pid} exited", "")
    raise FileNotFoundError(
        last.errno if last else errno.ENOENT,
        f"cannot open {path} as mapped by pid {pid} (tried maps path, /proc/PID/root, map_files)",
    )
