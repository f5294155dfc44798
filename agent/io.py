"""Reading and writing profile files in any supported format, with one-line errors."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import tempfile
from typing import BinaryIO
from typing import Iterator
from typing import Optional

from hostprof import encoders
from hostprof._errors import FormatError
from hostprof._errors import StorageError
from hostprof._errors import UsageError
from hostprof.model import Profile


def read_profile(data: bytes) -> Profile:
    """Decodes profile bytes of any readable format (sniffed from the content)."""
    fmt = encoders.sniff(data)
    if fmt in ("speedscope", "html"):
        raise FormatError(f"{fmt} files cannot be read back; convert from folded or pprof")
    return encoders.get(fmt).read(data)


def encode_profile(profile: Profile, fmt: str, sample_type: Optional[str] = None) -> bytes:
    """Encodes a profile to bytes in format ``fmt``."""
    module = encoders.get(fmt)
    buf = io.BytesIO()
    if sample_type and fmt != "pprof":
        module.write(profile, buf, sample_type=sample_type)
    else:
        module.write(profile, buf)
    return buf.getvalue()


@contextlib.contextmanager
def atomic_output(path: str, mode: int = -1) -> Iterator[BinaryIO]:
    """Opens a temporary file beside ``path`` and renames it over ``path`` on success.

    A reader never sees a partial file, and a failure (disk full, no permission) leaves nothing
    behind and raises a one-line StorageError.

    Args:
        path: the final file.
        mode: file mode for the result; -1 means what a plain ``open()`` would give (0666 less
            the umask), since mkstemp's 0600 would surprise users of a written profile.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hostprof-", dir=directory)
        with os.fdopen(fd, "wb") as f:
            yield f
        if mode < 0:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        hint = (
            "free some disk space"
            if exc.errno == errno.ENOSPC
            else "check the directory exists and is writable"
        )
        raise StorageError(f"cannot write {path}: {exc.strerror}", hint) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def write_profile(
    profile: Profile, path: str, fmt: Optional[str] = None, sample_type: Optional[str] = None
) -> str:
    """Writes ``profile`` to ``path`` (``-`` for stdout) atomically; returns the format used.

    Raises:
        StorageError: the file cannot be written (disk full, no permission); nothing partial
            is left behind.
    """
    fmt = encoders.format_for_path(path, fmt) if path != "-" or fmt else "folded"
    try:
        data = encode_profile(profile, fmt, sample_type)
    except KeyError as exc:
        raise UsageError(
            str(exc.args[0]), "see the profile's sample types with --sample-type"
        ) from None
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return fmt
    with atomic_output(path) as f:
        f.write(data)
    return fmt
