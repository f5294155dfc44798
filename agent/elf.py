"""A small ELF64 little-endian reader: sections, symbols (.dynsym/.symtab), build-id, PT_LOAD.

Used by the Python sampling core to find ``_PyRuntime`` and by the native symboliser to turn
addresses into function names. It reads the file with ``mmap`` and parses headers with
``struct``/numpy, so opening a 20 MB libpython with 30k symbols takes a few milliseconds.

Typical use::

    with ElfFile.open("/usr/lib/x86_64-linux-gnu/libz.so.1") as elf:
        addr = elf.symbol_address("inflate")         # link-time address
        table = elf.function_table()                 # sorted FUNC symbols for lookups
        name, offset = table.lookup(addr + 10)       # ("inflate", 10)

Addresses here are link-time virtual addresses; add the load bias of a mapping
(:meth:`hostprof.procmaps.Mapping.load_bias`) to get a process's runtime addresses.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from typing import TYPE_CHECKING
from typing import BinaryIO
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional
from typing import Tuple
from typing import Union

from hostprof._errors import TargetError

if TYPE_CHECKING:
    import numpy as np

SHT_SYMTAB = 2
SHT_DYNSYM = 11
SHT_NOTE = 7
SHT_NOBITS = 8
STT_FUNC = 2
STT_OBJECT = 1
STT_GNU_IFUNC = 10
PT_LOAD = 1
ET_EXEC = 2
ET_DYN = 3
NT_GNU_BUILD_ID = 3

# Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64.
_SYM = struct.Struct("<IBBHQQ")
_SYM_FIELDS = [
    ("name", "<u4"),
    ("info", "u1"),
    ("other", "u1"),
    ("shndx", "<u2"),
    ("value", "<u8"),
    ("size", "<u8"),
]
# numpy is imported by the functions that use it: symbol_address() (all `hostprof dump`
# needs) works without it, and numpy takes ~100 ms to import.


class ElfError(TargetError):
    """The file is not a readable ELF64 little-endian object."""


@dataclasses.dataclass(frozen=True)
class Section:
    """One section header."""

    name: str
    """Section name, e.g. ``.dynsym``."""
    type: int
    """``sh_type`` (SHT_*)."""
    addr: int
    """Virtual address when loaded (0 if not allocated)."""
    offset: int
    """Offset of the contents in the file."""
    size: int
    """Size of the contents in bytes."""
    link: int
    """``sh_link``: for symbol tables, the index of their string table."""
    entsize: int
    """Size of one entry for table sections."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """One program header (only PT_LOAD ones are kept)."""

    vaddr: int
    """Link-time virtual address."""
    offset: int
    """File offset."""
    filesz: int
    """Bytes present in the file."""
    memsz: int
    """Bytes in memory."""
    flags: int
    """PF_X=1, PF_W=2, PF_R=4."""


@dataclasses.dataclass
class FunctionTable:
    """FUNC symbols sorted by address for vectorised address -> name lookups.

    Attributes:
        addresses: uint64 start addresses (link-time), ascending.
        sizes: uint64 sizes (0 when the symbol table gives none).
        names: the symbol names, parallel to ``addresses``.
    """

    addresses: np.ndarray
    sizes: np.ndarray
    names: List[str]

    def __len__(self) -> int:
        return len(self.names)

    def lookup_many(self, addresses: np.ndarray) -> np.ndarray:
        """Index of the symbol containing each address, or -1 (int64 array).

        A symbol of size 0 is taken to extend to the next symbol.
        """
        import numpy as np

        addrs = np.asarray(addresses, dtype=np.uint64)
        idx = self.addresses.searchsorted(addrs, side="right").astype(np.int64) - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        if len(self.addresses):
            end = self.addresses[safe] + self.sizes[safe]
            ok &= (self.sizes[safe] == 0) | (addrs < end)
        else:
            ok &= False
        return np.where(ok, idx, -1)

    def lookup(self, address: int) -> Optional[Tuple[str, int]]:
        """(name, offset into it) of the symbol containing ``address``, or None."""
        import numpy as np

        i = int(self.lookup_many(np.array([address], dtype=np.uint64))[0])
        if i < 0:
            return None
        return self.names[i], address - int(self.addresses[i])


class LazyFunctionTable(FunctionTable):
    """A :class:`FunctionTable` whose names are decoded on first use (see
    :meth:`ElfFile.function_table_lazy`). ``names`` supports ``len`` and indexing."""

    def __init__(
        self, addresses: np.ndarray, sizes: np.ndarray, name_offsets: np.ndarray, strings: bytes
    ) -> None:
        super().__init__(addresses, sizes, _LazyNames(name_offsets, strings))  # type: ignore[arg-type]


class _LazyNames:
    """Symbol names decoded from a string table blob when indexed."""

    def __init__(self, offsets: np.ndarray, strings: bytes) -> None:
        self._offsets = offsets
        self._strings = strings
        self._cache: Dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, i: int) -> str:
        name = self._cache.get(i)
        if name is None:
            start = int(self._offsets[i])
            end = self._strings.find(b"\0", start)
            name = self._cache[i] = self._strings[start:end].decode("utf-8", "replace")
        return name


class ElfFile:
    """An opened ELF64 file. Use :meth:`open` and close it (or use ``with``)."""

    def __init__(self, data: Union[mmap.mmap, bytes], path: str = "") -> None:
        self.path = path
        self._data = data
        if len(data) < 64 or data[:4] != b"\x7fELF":
            raise ElfError(f"{path or 'data'} is not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise ElfError(f"{path}: only 64-bit little-endian ELF is supported")
        (
            self.type,
            _machine,
            _version,
            self.entry,
            phoff,
            shoff,
            _flags,
            _ehsize,
            phentsize,
            phnum,
            shentsize,
            shnum,
            shstrndx,
        ) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        self.segments: List[Segment] = []
        for i in range(phnum):
            p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = (
                struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
            )
            if p_type == PT_LOAD:
                self.segments.append(Segment(p_vaddr, p_offset, p_filesz, p_memsz, p_flags))
        raw = []
        for i in range(shnum if shoff else 0):
            raw.append(struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize))
        names_off = raw[shstrndx][4] if raw and shstrndx < len(raw) else 0
        self.sections: List[Section] = []
        for sh_name, sh_type, _fl, sh_addr, sh_off, sh_size, sh_link, _info, _al, sh_ent in raw:
            name = self._cstr(names_off + sh_name) if names_off else ""
            self.sections.append(Section(name, sh_type, sh_addr, sh_off, sh_size, sh_link, sh_ent))
        self._symbols: Optional[Dict[str, Tuple[int, int, int]]] = None

    @classmethod
    def open(cls, path: str) -> ElfFile:
        """Maps ``path`` read-only. Raises ElfError for non-ELF files, OSError if unreadable."""
        with open(path, "rb") as f:
            return cls.from_file(f, path)

    @classmethod
    def from_file(cls, f: BinaryIO, path: str = "") -> ElfFile:
        """Maps an already opened file (e.g. from :func:`hostprof.procmaps.open_mapped_file`)."""
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ElfError(f"{path} is empty")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(data, path)

    def close(self) -> None:
        """Unmaps the file."""
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- helpers
    def _cstr(self, offset: int) -> str:
        end = self._data.find(b"\0", offset)
        return bytes(self._data[offset:end]).decode("utf-8", "replace")

    def section(self, name: str) -> Optional[Section]:
        """The first section called ``name``, or None."""
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def read(self, offset: int, size: int) -> bytes:
        """Raw bytes of the file."""
        return bytes(self._data[offset : offset + size])

    def read_vaddr(self, vaddr: int, size: int) -> Optional[bytes]:
        """Initialised bytes at a link-time address (from the file), or None if not in a
        PT_LOAD's file-backed part."""
        for seg in self.segments:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                return self.read(seg.offset + vaddr - seg.vaddr, size)
        return None

    @property
    def is_pie_or_shared(self) -> bool:
        """True for ET_DYN objects (PIE executables, shared libraries): they get a load bias."""
        return self.type == ET_DYN

    @property
    def first_load_vaddr(self) -> int:
        """Lowest PT_LOAD virtual address (page-aligned), used to compute the load bias."""
        return min((s.vaddr - s.offset for s in self.segments), default=0)

    def build_id(self) -> Optional[str]:
        """The GNU build-id as hex, or None."""
        for s in self.sections:
            if s.type != SHT_NOTE:
                continue
            pos, end = s.offset, s.offset + s.size
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", self._data, pos)
                name_at = pos + 12
                desc_at = name_at + ((namesz + 3) & ~3)
                if ntype == NT_GNU_BUILD_ID and self.read(name_at, namesz).rstrip(b"\0") == b"GNU":
                    return self.read(desc_at, descsz).hex()
                pos = desc_at + ((descsz + 3) & ~3)
        return None

    # ---------------------------------------------------------------------------- symbols
    def _symbol_arrays(self, section: Section) -> Tuple[np.ndarray, Section]:
        import numpy as np

        dtype = np.dtype(_SYM_FIELDS)
        if section.entsize != dtype.itemsize or section.type == SHT_NOBITS:
            return np.empty(0, dtype=dtype), section
        count = section.size // dtype.itemsize
        syms = np.frombuffer(self._data, dtype=dtype, count=count, offset=section.offset)
        return syms, self.sections[section.link]

    def _tables(self) -> Iterator[Tuple[np.ndarray, Section]]:
        # .symtab first: it is a superset of .dynsym when present (unstripped files).
        for wanted in (SHT_SYMTAB, SHT_DYNSYM):
            for s in self.sections:
                if s.type == wanted:
                    yield self._symbol_arrays(s)

    def symbols(self) -> Dict[str, Tuple[int, int, int]]:
        """All defined symbols: name -> (value, size, st_type). Built once, then cached."""
        if self._symbols is None:
            out: Dict[str, Tuple[int, int, int]] = {}
            for syms, strtab in self._tables():
                defined = syms[syms["shndx"] != 0]
                for rec in defined.tolist():
                    name = self._cstr(strtab.offset + rec[0])
                    if name and name not in out:
                        out[name] = (rec[4], rec[5], rec[1] & 0xF)
            self._symbols = out
        return self._symbols

    def symbol_address(self, name: str) -> Optional[int]:
        """Link-time address of a defined symbol, looking only at the tables needed.

        Faster than :meth:`symbols` for one name: it searches ``.dynsym`` first (exported
        names, small) and the string tables in place, without decoding every symbol.
        """
        if self._symbols is not None:
            hit = self._symbols.get(name)
            return hit[0] if hit else None
        needle = b"\0" + name.encode() + b"\0"
        for wanted in (SHT_DYNSYM, SHT_SYMTAB):
            for section in self.sections:
                if section.type != wanted or section.entsize != _SYM.size:
                    continue
                strtab = self.sections[section.link]
                start, end = strtab.offset, strtab.offset + strtab.size
                pos = self._data.find(needle, start, end)
                while pos >= 0:
                    value = self._defined_symbol_named(section, pos + 1 - start)
                    if value is not None:
                        return value
                    pos = self._data.find(needle, pos + 1, end)
        return None

    def _defined_symbol_named(self, section: Section, name_offset: int) -> Optional[int]:
        """st_value of the first defined symbol of ``section`` whose st_name is
        ``name_offset``, found by a byte search in the section's st_name column (C speed,
        no numpy)."""
        count = section.size // _SYM.size
        table = self._data[section.offset : section.offset + count * _SYM.size]
        # Every sixth uint32 of the table is an st_name: one contiguous copy to search in.
        names = memoryview(table).cast("I")[:: _SYM.size // 4].tobytes()
        key = struct.pack("<I", name_offset)
        pos = names.find(key)
        while pos >= 0:
            if pos % 4 == 0:
                _name, _info, _other, shndx, value, _size = _SYM.unpack_from(table, pos * 6)
                if shndx != 0:
                    return value
            pos = names.find(key, pos + 1)
        return None

    def function_table_lazy(self) -> LazyFunctionTable:
        """Like :meth:`function_table`, but names are decoded only when looked up.

        Added for the eBPF symbolizer (hostprof.symbolize), which loads the tables of every
        object a host maps but needs few names from each. The string tables are copied, so
        the result outlives :meth:`close`.
        """
        import numpy as np

        addrs: List[np.ndarray] = []
        sizes: List[np.ndarray] = []
        offs: List[np.ndarray] = []
        blobs: List[bytes] = []
        base = 0
        for syms, strtab in self._tables():
            kind = syms["info"] & 0xF
            funcs = syms[
                ((kind == STT_FUNC) | (kind == STT_GNU_IFUNC))
                & (syms["value"] != 0)
                & (syms["shndx"] != 0)
            ]
            if not len(funcs):
                continue
            addrs.append(funcs["value"].astype(np.uint64))
            sizes.append(funcs["size"].astype(np.uint64))
            offs.append(funcs["name"].astype(np.int64) + base)
            blob = self.read(strtab.offset, strtab.size)
            blobs.append(blob)
            base += len(blob)
        if not addrs:
            empty = np.empty(0, np.uint64)
            return LazyFunctionTable(empty, empty, np.empty(0, np.int64), b"")
        all_addrs = np.concatenate(addrs)
        all_sizes = np.concatenate(sizes)
        all_offs = np.concatenate(offs)
        order = np.lexsort((-all_sizes.astype(np.int64), all_addrs))
        all_addrs, all_sizes, all_offs = all_addrs[order], all_sizes[order], all_offs[order]
        keep = np.concatenate(([True], all_addrs[1:] != all_addrs[:-1]))
        return LazyFunctionTable(all_addrs[keep], all_sizes[keep], all_offs[keep], b"".join(blobs))

    def function_table(self) -> FunctionTable:
        """All FUNC (and IFUNC) symbols with nonzero address, sorted, deduplicated by address."""
        import numpy as np

        addrs: List[np.ndarray] = []
        sizes: List[np.ndarray] = []
        names: List[str] = []
        for syms, strtab in self._tables():
            kind = syms["info"] & 0xF
            funcs = syms[
                ((kind == STT_FUNC) | (kind == STT_GNU_IFUNC))
                & (syms["value"] != 0)
                & (syms["shndx"] != 0)
            ]
            if not len(funcs):
                continue
            addrs.append(funcs["value"].astype(np.uint64))
            sizes.append(funcs["size"].astype(np.uint64))
            names.extend(self._cstr(strtab.offset + int(n)) for n in funcs["name"])
        if not names:
            return FunctionTable(np.empty(0, np.uint64), np.empty(0, np.uint64), [])
        all_addrs = np.concatenate(addrs)
        all_sizes = np.concatenate(sizes)
        order = np.lexsort((-all_sizes.astype(np.int64), all_addrs))
        all_addrs, all_sizes = all_addrs[order], all_sizes[order]
        keep = np.concatenate(([True], all_addrs[1:] != all_addrs[:-1]))
        kept = order[keep]
        return FunctionTable(all_addrs[keep], all_sizes[keep], [names[i] for i in kept.tolist()])
