# distutils: sources = native/pyreader.c native/tidmap.c
"""Thin wrapper over pyreader.c: a remote CPython stack reader. Algorithms live in the C file.

One :class:`Reader` owns one ``hp_reader`` (freed in ``__dealloc__``/``close``). The sampling
loop runs in C with the GIL released; :meth:`Reader.drain` swaps its output out under the
reader's lock and returns numpy columns.
"""

from libc.stdint cimport int64_t
from libc.stdint cimport uint64_t
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free
from libc.stdlib cimport malloc
from libc.string cimport memcpy

from pyreader cimport HP_ERR_GONE
from pyreader cimport HP_ERR_NOMEM
from pyreader cimport HP_ERR_PERM
from pyreader cimport HP_ERR_READ
from pyreader cimport HP_GC_KEY
from pyreader cimport hp_buf_clear
from pyreader cimport hp_buf_free
from pyreader cimport hp_buf_init
from pyreader cimport hp_code
from pyreader cimport hp_monotonic_ns
from pyreader cimport hp_offsets_clear
from pyreader cimport hp_offsets_set
from pyreader cimport hp_py_offsets
from pyreader cimport hp_read
from pyreader cimport hp_reader
from pyreader cimport hp_reader_free
from pyreader cimport hp_reader_init
from pyreader cimport hp_reader_lock
from pyreader cimport hp_reader_set_threadstate
from pyreader cimport hp_reader_unlock
from pyreader cimport hp_sample
from pyreader cimport hp_sample_buf
from pyreader cimport hp_sample_loop
from pyreader cimport hp_sample_once

GC_KEY = HP_GC_KEY
"""Frame key of the synthetic ``<gc>`` leaf frame."""

ERR_GONE = HP_ERR_GONE
ERR_PERM = HP_ERR_PERM
ERR_READ = HP_ERR_READ
ERR_NOMEM = HP_ERR_NOMEM


class ReadError(OSError):
    """A read of the target failed; ``code`` is one of the ERR_* constants."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


cdef _raise(int rc, str what):
    if rc == HP_ERR_GONE:
        raise ReadError(rc, f"{what}: the process exited")
    if rc == HP_ERR_PERM:
        raise ReadError(rc, f"{what}: permission denied")
    if rc == HP_ERR_NOMEM:
        raise MemoryError(what)
    raise ReadError(rc, f"{what}: cannot read the interpreter state")


cdef object _columns(hp_sample_buf *b):
    """Copies a sample buffer into numpy columns (called with the reader's lock held)."""
    # numpy is imported here, not at module load: `hostprof dump` reads one instant through
    # _rows() and must not pay numpy's ~100 ms import.
    import numpy as np
    cdef Py_ssize_t n = b.n_samples
    cdef Py_ssize_t nf = b.n_frames
    tid = np.empty(n, dtype=np.int32)
    flags = np.empty(n, dtype=np.uint8)
    ts = np.empty(n, dtype=np.int64)
    tstate = np.empty(n, dtype=np.uint64)
    thread_id = np.empty(n, dtype=np.uint64)
    state = np.empty(n, dtype=np.uint8)
    offsets = np.empty(n + 1, dtype=np.int64)
    keys = np.empty(nf, dtype=np.uint64)
    cdef int[::1] tid_v = tid
    cdef unsigned char[::1] flags_v = flags
    cdef long long[::1] ts_v = ts
    cdef unsigned long long[::1] tstate_v = tstate
    cdef unsigned long long[::1] thread_v = thread_id
    cdef unsigned char[::1] state_v = state
    cdef long long[::1] off_v = offsets
    cdef unsigned long long[::1] keys_v = keys
    cdef Py_ssize_t i
    cdef hp_sample *s
    for i in range(n):
        s = &b.samples[i]
        tid_v[i] = s.tid
        flags_v[i] = s.flags
        ts_v[i] = s.timestamp_ns
        tstate_v[i] = s.tstate
        thread_v[i] = s.thread_id
        state_v[i] = <unsigned char>s.os_state
        off_v[i] = <long long>s.frames_start
    off_v[n] = nf
    if nf:
        memcpy(&keys_v[0], b.frames, nf * sizeof(uint64_t))
    return {
        "tid": tid, "flags": flags, "timestamp_ns": ts, "tstate": tstate,
        "thread_id": thread_id, "os_state": state, "offsets": offsets, "keys": keys,
    }


cdef list _rows(hp_sample_buf *b):
    """One tuple per thread sample (tid, thread_id, flags, os_state, tstate, keys, ns_tid),
    keys a list of frame keys root first, tid the host's and ns_tid the target's PID
    namespace's: plain Python objects, no numpy."""
    cdef Py_ssize_t n = b.n_samples
    cdef Py_ssize_t i, j, end
    cdef hp_sample *s
    out = []
    for i in range(n):
        s = &b.samples[i]
        end = b.samples[i + 1].frames_start if i + 1 < n else b.n_frames
        keys = [b.frames[j] for j in range(<Py_ssize_t>s.frames_start, end)]
        out.append((s.tid, s.thread_id, s.flags, chr(<unsigned char>s.os_state), s.tstate, keys,
                    s.ns_tid))
    return out


cdef class Reader:
    """Reads Python stacks of process ``pid`` whose ``_PyRuntime`` is at ``runtime_addr``.

    Args:
        pid: target process id.
        runtime_addr: runtime address of ``_PyRuntime``.
        offsets: field name -> value for ``hp_py_offsets`` (see pyreader.h).
        max_depth: deepest stack kept; deeper chains are treated as torn.
    """

    cdef hp_reader *_r
    cdef bint _running
    cdef list _thread_states

    def __cinit__(self, int pid, uint64_t runtime_addr, dict offsets, int max_depth=4096):
        self._thread_states = []
        cdef hp_py_offsets off
        hp_offsets_clear(&off)
        for name, value in offsets.items():
            if hp_offsets_set(&off, name.encode(), <int64_t>value) != 0:
                raise KeyError(f"unknown offsets field {name!r}")
        self._r = <hp_reader *>malloc(sizeof(hp_reader))
        if self._r == NULL:
            raise MemoryError()
        cdef int rc = hp_reader_init(self._r, pid, runtime_addr, &off, max_depth)
        if rc != 0:
            hp_reader_free(self._r)
            free(self._r)
            self._r = NULL
            _raise(rc, f"attaching to pid {pid}")

    def __dealloc__(self):
        self.close()

    def close(self):
        """Frees the reader. Must not be called while :meth:`run` is running."""
        if self._r != NULL and not self._running:
            hp_reader_free(self._r)
            free(self._r)
            self._r = NULL

    cdef hp_reader *_get(self) except NULL:
        if self._r == NULL:
            raise ValueError("reader is closed")
        return self._r

    @property
    def interp_addr(self):
        """Address of the main interpreter state."""
        return self._get().interp_addr

    @property
    def read_os_state(self):
        """Whether samples read the OS thread state (for the idle flag)."""
        return bool(self._get().read_os_state)

    @read_os_state.setter
    def read_os_state(self, value):
        self._get().read_os_state = 1 if value else 0

    def set_thread_states(self, states):
        """Takes thread states from sched_switch data instead of /proc where it can.

        Args:
            states: a :class:`hostprof.native._threadstate.ThreadStates` (the offcpu
                collector's mapped table), or None for /proc only. Safe while :meth:`run`
                runs. Every table ever set stays referenced (mapped) until the reader is
                freed, because the loop may still be reading one it picked up earlier.
        """
        cdef hp_reader *r = self._get()
        if states is None:
            hp_reader_set_threadstate(r, NULL)
            return
        if not any(s is states for s in self._thread_states):
            self._thread_states.append(states)
        hp_reader_set_threadstate(r, <void *><uintptr_t>states.address)

    def read(self, uint64_t addr, Py_ssize_t size):
        """Reads ``size`` bytes of target memory at ``addr`` (no caching)."""
        cdef hp_reader *r = self._get()
        buf = bytearray(size)
        cdef unsigned char[::1] view = buf
        cdef int rc
        if size == 0:
            return b""
        with nogil:
            rc = hp_read(r, addr, &view[0], size)
        if rc != 0:
            _raise(rc, f"reading {size} bytes at {addr:#x}")
        return bytes(buf)

    cdef int _sample_now(self, hp_sample_buf *buf) except -1:
        """One instant of every thread into ``buf`` (the loop's lock held, GIL released)."""
        cdef hp_reader *r = self._get()
        cdef int rc
        with nogil:
            hp_reader_lock(r)
            rc = hp_sample_once(r, buf, hp_monotonic_ns())
            hp_reader_unlock(r)
        if rc < 0:
            _raise(rc, f"sampling pid {r.pid}")
        return 0

    def sample(self):
        """Takes one sample of every thread now; returns the same columns as :meth:`drain`."""
        cdef hp_sample_buf buf
        hp_buf_init(&buf)
        try:
            self._sample_now(&buf)
            return _columns(&buf)
        finally:
            hp_buf_free(&buf)

    def sample_rows(self):
        """Like :meth:`sample`, as a list of (tid, thread_id, flags, os_state, tstate, keys,
        ns_tid) tuples (os_state a one-letter str, keys a list; tid is the host's, ns_tid
        the target's PID namespace's): for one-shot readers such as ``dump`` that should
        not import numpy."""
        cdef hp_sample_buf buf
        hp_buf_init(&buf)
        try:
            self._sample_now(&buf)
            return _rows(&buf)
        finally:
            hp_buf_free(&buf)

    def run(self, int64_t interval_ns):
        """Samples every ``interval_ns`` until :meth:`stop` (GIL released the whole time).

        Returns 0 when stopped, or an ERR_* code when the target exited or became unreadable.
        """
        cdef hp_reader *r = self._get()
        cdef int rc
        r.stop = 0
        self._running = True
        try:
            with nogil:
                rc = hp_sample_loop(r, interval_ns)
        finally:
            self._running = False
        return rc

    def stop(self):
        """Asks :meth:`run` to return after the current sample."""
        if self._r != NULL:
            self._r.stop = 1

    def drain(self):
        """Returns and clears the samples :meth:`run` collected, as numpy columns:
        tid, flags, timestamp_ns, tstate, thread_id, os_state (ASCII code), offsets (n + 1)
        and keys (frame keys: code id << 32 | line, root first)."""
        cdef hp_reader *r = self._get()
        with nogil:
            hp_reader_lock(r)
        try:
            cols = _columns(&r.out)
            hp_buf_clear(&r.out)
        finally:
            hp_reader_unlock(r)
        return cols

    def code(self, Py_ssize_t index):
        """(name, qualname, filename, firstlineno) of cached code object ``index``."""
        cdef hp_reader *r = self._get()
        cdef hp_code *c
        with nogil:
            hp_reader_lock(r)
        try:
            if index < 0 or index >= r.n_codes:
                raise IndexError(index)
            c = &r.codes[index]
            return (
                c.name.decode("utf-8", "replace"),
                c.qualname.decode("utf-8", "replace"),
                c.filename.decode("utf-8", "replace"),
                c.firstlineno,
            )
        finally:
            hp_reader_unlock(r)

    @property
    def n_codes(self):
        """Number of code objects cached so far."""
        return self._get().n_codes

    def stats(self):
        """Counters: ticks, samples, torn_retries, torn_dropped, late, reads, errors, busy_ns,
        stale_codes,
        paused_ns, bytes_read, os_reads (/proc reads), state_hits (thread states taken from
        sched_switch data), state_seeds (/proc reads stored into that table), code_checks
        (cached code objects re-read to check they were not replaced), frames_reused (thread
        stacks taken from the previous read: no GIL hand-over since)."""
        cdef hp_reader *r = self._get()
        with nogil:
            hp_reader_lock(r)
        try:
            s = r.stats
            return {
                "ticks": s.ticks, "samples": s.samples, "torn_retries": s.torn_retries,
                "torn_dropped": s.torn_dropped, "late": s.late, "reads": s.reads,
                "errors": s.errors, "busy_ns": s.busy_ns, "stale_codes": s.stale_codes,
                "paused_ns": s.paused_ns, "bytes_read": s.bytes_read, "os_reads": s.os_reads,
                "state_hits": s.state_hits, "state_seeds": s.state_seeds,
                "code_checks": s.code_checks, "frames_reused": s.frames_reused,
            }
        finally:
            hp_reader_unlock(r)

    @property
    def code_check_interval_ns(self):
        """In :meth:`run`, how long a cached code object is trusted before its header is
        read again to check it was not freed and replaced at the same address (0: every
        instant). One-shot samples always check."""
        return self._get().code_check_ns

    @code_check_interval_ns.setter
    def code_check_interval_ns(self, int64_t value):
        self._get().code_check_ns = value if value > 0 else 0

    @property
    def realtime(self):
        """Whether :meth:`run`'s thread asks for SCHED_FIFO priority 1 at rates of 250 Hz
        and more (needs root or CAP_SYS_NICE; else it keeps nice -5), so ticks stay on
        time on a busy host. It
        falls back to the normal policy for good if the loop ever uses over half a CPU
        over a second."""
        return bool(self._get().realtime)

    @realtime.setter
    def realtime(self, value):
        self._get().realtime = 1 if value else 0

    @property
    def reuse_parked_stacks(self):
        """In :meth:`run`, reuse a thread's previous stack while the GIL's switch_number
        says no other thread has taken the GIL since it was read (a thread changes its
        frames only while holding the GIL). Only for builds with a GIL: off by default."""
        return bool(self._get().gil_reuse)

    @reuse_parked_stacks.setter
    def reuse_parked_stacks(self, value):
        self._get().gil_reuse = 1 if value else 0

    @property
    def blocking(self):
        """Opt-in: stop every target thread (ptrace) while each instant is read."""
        return bool(self._get().blocking)

    @blocking.setter
    def blocking(self, value):
        self._get().blocking = 1 if value else 0

    @property
    def last_error(self):
        """The error code that ended the last :meth:`run` (0 if it was stopped)."""
        return self._get().last_error
