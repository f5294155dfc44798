# distutils: sources = native/threadstate.c
"""Every thread's scheduler state, from the offcpu collector's mapped BPF table.

:class:`ThreadStates` owns one mapping of the ``thread_state`` array that
``collectors/offcpu.bpf.c`` fills from ``sched_switch`` and ``sched_wakeup``. The sampling
loop reads it in C (:meth:`hostprof.native._sampler.Reader.set_thread_states`); Python reads
it here. The layout and its rules are in ``threadstate.h``.

The offcpu collector publishes its table while it runs (:func:`publish`, :func:`withdraw`);
samplers in the same process pick the live one up with :func:`current`. The table is
host-wide, so any live one serves every target.
"""

from libc.stdint cimport int64_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free
from libc.stdlib cimport malloc

from threadstate cimport hp_threadstate
from threadstate cimport hp_threadstate_blocked_since
from threadstate cimport hp_threadstate_close
from threadstate cimport hp_threadstate_get
from threadstate cimport hp_threadstate_open

import os


cdef class ThreadStates:
    """A mapped ``thread_state`` table of ``entries`` slots (a power of two).

    Args:
        map_fd: the BPF map's fd (the mapping keeps the map alive after the fd is closed).
        entries: the map's ``max_entries``.

    Raises:
        OSError: the map cannot be mapped (not ``BPF_F_MMAPABLE``, wrong size).
    """

    cdef hp_threadstate *_t
    cdef readonly uint32_t entries

    def __cinit__(self, int map_fd, uint32_t entries):
        self._t = <hp_threadstate *>malloc(sizeof(hp_threadstate))
        if self._t == NULL:
            raise MemoryError()
        cdef int rc = hp_threadstate_open(self._t, map_fd, entries)
        if rc != 0:
            free(self._t)
            self._t = NULL
            raise OSError(-rc, f"cannot map the thread_state table: {os.strerror(-rc)}")
        self.entries = entries

    def __dealloc__(self):
        # Only reached when nothing references this object any more: no Reader (they keep
        # every table they were given) can be reading the mapping.
        if self._t != NULL:
            hp_threadstate_close(self._t)
            free(self._t)
            self._t = NULL

    @property
    def address(self):
        """Address of the C ``hp_threadstate`` (for ``Reader.set_thread_states``)."""
        return <uintptr_t>self._t

    @property
    def live(self):
        """False once :meth:`retire` was called: the kernel no longer updates the table."""
        return bool(self._t.live)

    def retire(self):
        """Marks the table stale (its BPF program is being detached); readers fall back."""
        self._t.live = 0

    def state(self, int tid):
        """The state letter of ``tid`` ('R' running or runnable, 'S', 'D', ... blocked), or
        None when the table does not know the thread (never seen, or a colliding slot)."""
        cdef uint64_t seen = 0
        cdef char c = hp_threadstate_get(self._t, tid, &seen)
        return chr(c) if c else None

    def states(self, tids):
        """``{tid: letter}`` for the threads the table knows."""
        cdef uint64_t seen = 0
        cdef char c
        out = {}
        for tid in tids:
            c = hp_threadstate_get(self._t, <int>int(tid), &seen)
            if c:
                out[int(tid)] = chr(c)
        return out

    def blocked_since(self, tids):
        """``{tid: CLOCK_MONOTONIC ns}`` for the given threads the kernel saw block and that
        are still blocked. Seeded entries (state from /proc, time unknown) are left out."""
        cdef int64_t since
        out = {}
        for tid in tids:
            since = hp_threadstate_blocked_since(self._t, <int>int(tid))
            if since:
                out[int(tid)] = since
        return out


_published = []


def publish(ThreadStates states):
    """Offers a live table to samplers in this process (the offcpu collector, on start)."""
    _published.append(states)


def withdraw(ThreadStates states):
    """Retires a table and stops offering it (the offcpu collector, on stop)."""
    states.retire()
    _published[:] = [s for s in _published if s is not states]


def current():
    """The most recently published live table, or None (no offcpu collector runs)."""
    for s in reversed(_published):
        if s.live:
            return s
    return None
