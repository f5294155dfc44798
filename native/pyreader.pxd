# Declarations of pyreader.h that the Cython wrapper touches. Plain C: nothing raises, so
# everything is noexcept nogil.
from libc.stdint cimport int32_t
from libc.stdint cimport int64_t
from libc.stdint cimport uint8_t
from libc.stdint cimport uint32_t
from libc.stdint cimport uint64_t


cdef extern from "pyreader.h" nogil:
    int HP_OK
    int HP_ERR_NOMEM
    int HP_ERR_GONE
    int HP_ERR_PERM
    int HP_ERR_READ
    uint64_t HP_GC_KEY

    ctypedef struct hp_py_offsets:
        pass

    ctypedef struct hp_code:
        uint64_t addr
        char *name
        char *qualname
        char *filename
        int32_t firstlineno
        uint8_t *linetable
        uint32_t linetable_len

    ctypedef struct hp_sample:
        int64_t timestamp_ns
        uint64_t tstate
        uint64_t thread_id
        uint64_t frames_start
        int32_t tid
        uint32_t n_frames
        uint8_t flags
        char os_state
        int32_t ns_tid

    ctypedef struct hp_sample_buf:
        hp_sample *samples
        uint64_t n_samples
        uint64_t *frames
        uint64_t n_frames

    ctypedef struct hp_stats:
        uint64_t ticks
        uint64_t samples
        uint64_t torn_retries
        uint64_t torn_dropped
        uint64_t late
        uint64_t reads
        uint64_t errors
        uint64_t busy_ns
        uint64_t stale_codes
        uint64_t paused_ns
        uint64_t bytes_read
        uint64_t os_reads
        uint64_t state_hits
        uint64_t state_seeds
        uint64_t code_checks
        uint64_t frames_reused

    ctypedef struct hp_reader:
        int pid
        uint64_t runtime_addr
        uint64_t interp_addr
        int read_os_state
        hp_code *codes
        uint32_t n_codes
        hp_sample_buf out
        hp_stats stats
        int stop
        int blocking
        int last_error
        int64_t code_check_ns
        int gil_reuse
        int realtime

    int hp_offsets_set(hp_py_offsets *o, const char *name, int64_t value) noexcept
    void hp_offsets_clear(hp_py_offsets *o) noexcept
    hp_py_offsets *hp_reader_offsets(hp_reader *r) noexcept
    void hp_reader_lock(hp_reader *r) noexcept
    void hp_reader_unlock(hp_reader *r) noexcept
    int hp_reader_init(hp_reader *r, int pid, uint64_t runtime_addr, const hp_py_offsets *off,
                       int max_depth) noexcept
    void hp_reader_free(hp_reader *r) noexcept
    int hp_read(hp_reader *r, uint64_t addr, void *buf, size_t n) noexcept
    int hp_sample_once(hp_reader *r, hp_sample_buf *buf, int64_t timestamp_ns) noexcept
    int hp_sample_loop(hp_reader *r, int64_t interval_ns) noexcept
    void hp_reader_set_threadstate(hp_reader *r, void *t) noexcept
    int32_t hp_code_line(const hp_reader *r, const hp_code *c, int64_t byte_offset) noexcept
    void hp_buf_init(hp_sample_buf *b) noexcept
    void hp_buf_free(hp_sample_buf *b) noexcept
    void hp_buf_clear(hp_sample_buf *b) noexcept
    int64_t hp_monotonic_ns() noexcept

