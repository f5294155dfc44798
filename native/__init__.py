"""Native (Cython/C) core of hostprof: stack interning and the remote CPython reader."""
