/*
 * shardpoint.h - the whole C ABI of shardpoint.
 *
 * shardpoint saves the shards ("chunks") that many processes ("ranks") hold of the same tensors as
 * one checkpoint directory, and loads any box of any tensor back, into any number of ranks.
 * The on-disk layout is specified in FORMAT.md.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *  - Fallible functions return 0 (SHARDPOINT_OK) or a negative shardpoint_error code. On failure
 *    out-parameters are left untouched and shardpoint_last_error() describes what went wrong.
 *    Successful calls and the _free functions never change the last error.
 *  - Handles are opaque. Constructors return them through their first parameter; every _free
 *    function accepts NULL.
 *  - Caller memory passed to a function is borrowed for the duration of that call only, except
 *    the tensor data given to shardpoint_save_add_tensor/_add_bytes (read during
 *    shardpoint_save_commit) and the destinations given to shardpoint_load_add_tensor/_add_bytes
 *    (written during shardpoint_load_execute); those must stay valid and unmoved until then.
 *  - Strings are NUL-terminated UTF-8. Strings and arrays returned by the library are owned by the
 *    handle they came from and stay valid until that handle is freed.
 *  - Thread rules: distinct handles may be used from distinct threads at the same time. One handle
 *    must not be used by two threads at once, except a shardpoint_reader, whose query and
 *    read functions are safe to call concurrently.
 *  - Collective functions (marked "collective") must be called by every rank of the
 *    communicator, in the same order. Every rank returns the same outcome.
 *  - Element strides are counted in elements, not bytes, and may be negative or zero.
 *    A NULL strides pointer means C order (row-major, contiguous).
 *  - Tensor memory needs no particular alignment. Bytes are stored and returned exactly as given:
 *    nothing is converted or validated (a bool element other than 0 or 1 stays as it is).
 *  - A collective function calls the communicator even when it has a single rank.
 */
#ifndef SHARDPOINT_H
#define SHARDPOINT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define SHARDPOINT_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define SHARDPOINT_API __attribute__((visibility("default")))
#else
#  define SHARDPOINT_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------------------------- */

#define SHARDPOINT_VERSION_MAJOR 0
#define SHARDPOINT_VERSION_MINOR 1
#define SHARDPOINT_VERSION_PATCH 0
#define SHARDPOINT_VERSION_NUMBER \
    (SHARDPOINT_VERSION_MAJOR * 10000 + SHARDPOINT_VERSION_MINOR * 100 + SHARDPOINT_VERSION_PATCH)
#define SHARDPOINT_VERSION_STRING "0.1.0"

/* The major version of the checkpoint format this library writes unless a save asks for block
 * compression (SHARDPOINT_CODEC_ZLIB, SHARDPOINT_CODEC_ZSTD), which writes 2. */
#define SHARDPOINT_FORMAT_MAJOR 1
/* The newest major version this library reads (it reads 1 and 2). */
#define SHARDPOINT_FORMAT_MAJOR_MAX 2

/* Runtime version of the loaded library, as SHARDPOINT_VERSION_NUMBER. Never fails. */
SHARDPOINT_API uint32_t shardpoint_version_number(void);
/* Runtime version string of the loaded library ("0.1.0"). Static storage. Never fails. */
SHARDPOINT_API const char *shardpoint_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* Stable error codes. Values never change; new codes get new values. */
typedef enum shardpoint_error {
    SHARDPOINT_OK = 0,
    SHARDPOINT_EINVAL = -1,      /* invalid argument (NULL pointer, bad dtype, bad option) */
    SHARDPOINT_ENOMEM = -2,      /* out of memory */
    SHARDPOINT_EIO = -3,         /* the operating system reported an I/O error */
    SHARDPOINT_ENOTFOUND = -4,   /* no checkpoint at the path, or no entry with that name */
    SHARDPOINT_EEXISTS = -5,     /* a checkpoint exists and overwrite was not asked for */
    SHARDPOINT_EFORMAT = -6,     /* metadata is malformed, truncated or inconsistent */
    SHARDPOINT_ECHECKSUM = -7,   /* stored bytes do not match their CRC-32 */
    SHARDPOINT_ETRUNCATED = -8,  /* a data file is shorter than the metadata says */
    SHARDPOINT_EVERSION = -9,    /* the checkpoint's format major version is not supported */
    SHARDPOINT_EDTYPE = -10,     /* the requested dtype differs from the stored one */
    SHARDPOINT_ESHAPE = -11,     /* wrong rank, box outside the tensor, chunk outside its shape */
    SHARDPOINT_EPATH = -12,      /* a path in the metadata leaves the checkpoint directory */
    SHARDPOINT_ECONFLICT = -13,  /* ranks offered incompatible chunks or duplicate names */
    SHARDPOINT_ERANK = -14,      /* another rank failed; the message names it and the step */
    SHARDPOINT_ECOMM = -15,      /* a communicator callback or MPI call failed */
    SHARDPOINT_EUNCOVERED = -16, /* the requested box is not fully covered by saved chunks */
    SHARDPOINT_ESTATE = -17,     /* the handle is not in a state that allows this call */
    SHARDPOINT_EKIND = -18,      /* tensor call on a bytes entry, or the reverse */
    SHARDPOINT_ERANGE = -19,     /* a caller buffer is too small */
    SHARDPOINT_ENOSPC = -20,     /* no space left on the device, or a disk quota is exhausted */
    SHARDPOINT_ENOTDURABLE = -21,/* the save WAS committed (the new checkpoint is in place and
                                    loads), but a step after the commit point failed (the
                                    directory fsync): it may not survive a power loss. The
                                    previous checkpoint's files were kept (shardpoint_gc or the
                                    next save removes them). */
    SHARDPOINT_ECANCELED = -22,  /* a progress callback asked to stop; nothing was committed */
    SHARDPOINT_EINTERNAL = -99   /* a bug in shardpoint; please report it */
} shardpoint_error;

/* The message of the last failure on the calling thread. Never NULL (empty when there was none).
 * Valid until the next shardpoint call on the same thread. */
SHARDPOINT_API const char *shardpoint_last_error(void);
/* The code of the last failure on the calling thread (SHARDPOINT_OK when there was none). */
SHARDPOINT_API int shardpoint_last_error_code(void);
/* A stable name for a code ("SHARDPOINT_ECHECKSUM"); "SHARDPOINT_UNKNOWN" for unknown codes.
 * Static storage. Never fails. */
SHARDPOINT_API const char *shardpoint_error_name(int code);

/* ---------------------------------------------------------------------------------------------
 * Dtypes. Values are stable and equal to the DType enum of the format (FORMAT.md).
 * ------------------------------------------------------------------------------------------- */

typedef enum shardpoint_dtype {
    SHARDPOINT_DTYPE_BOOL = 0,
    SHARDPOINT_DTYPE_U8 = 1,
    SHARDPOINT_DTYPE_I8 = 2,
    SHARDPOINT_DTYPE_I16 = 3,
    SHARDPOINT_DTYPE_I32 = 4,
    SHARDPOINT_DTYPE_I64 = 5,
    SHARDPOINT_DTYPE_U16 = 6,
    SHARDPOINT_DTYPE_U32 = 7,
    SHARDPOINT_DTYPE_U64 = 8,
    SHARDPOINT_DTYPE_F16 = 9,
    SHARDPOINT_DTYPE_BF16 = 10,
    SHARDPOINT_DTYPE_F32 = 11,
    SHARDPOINT_DTYPE_F64 = 12,
    SHARDPOINT_DTYPE_COMPLEX64 = 13,
    SHARDPOINT_DTYPE_COMPLEX128 = 14,
    SHARDPOINT_DTYPE_F8_E4M3FN = 15,
    SHARDPOINT_DTYPE_F8_E5M2 = 16
} shardpoint_dtype;

#define SHARDPOINT_DTYPE_COUNT 17
/* The largest number of dimensions a tensor may have. */
#define SHARDPOINT_MAX_NDIM 32

/* Size of one element in bytes; 0 for an unknown dtype. Never fails. */
SHARDPOINT_API uint32_t shardpoint_dtype_size(int32_t dtype);
/* Canonical lowercase name ("f32", "bf16", "complex64"); NULL for an unknown dtype. Static. */
SHARDPOINT_API const char *shardpoint_dtype_name(int32_t dtype);
/* Parses a canonical name. Errors: SHARDPOINT_EINVAL (NULL or unknown name). */
SHARDPOINT_API int shardpoint_dtype_from_name(const char *name, int32_t *out_dtype);

/* ---------------------------------------------------------------------------------------------
 * Communicators: how the ranks of one job talk during collective calls.
 * ------------------------------------------------------------------------------------------- */

typedef struct shardpoint_comm shardpoint_comm;

/* A communicator for a job of one process (rank 0 of 1). Collective calls given NULL instead of a
 * communicator behave as if given this one. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_comm_new_single(shardpoint_comm **out);

#define SHARDPOINT_COMM_CALLBACKS_VERSION 1

/* Collectives supplied by the host runtime (torch.distributed, a Go service, threads, ...).
 * Rank 0 is always the root. The library calls the callbacks only from inside collective
 * shardpoint functions, on the thread that called them, and in the same order on every rank.
 * A callback returns 0 on success and any other value on failure; the library then fails with
 * SHARDPOINT_ECOMM (the other ranks may then block inside their callbacks: a transport that can
 * fail should abort the job, as MPI does). */
typedef struct shardpoint_comm_callbacks {
    uint32_t version; /* SHARDPOINT_COMM_CALLBACKS_VERSION */
    int32_t rank;     /* this process's rank, 0 <= rank < size */
    int32_t size;     /* the number of ranks, >= 1 */
    void *user;       /* passed to every callback */
    /* Every rank sends `len` bytes (the same len on every rank). Rank 0 receives size * len bytes,
     * rank r's bytes at offset r * len, into `recv`; on other ranks `recv` is NULL. */
    int (*gather)(void *user, const void *send, uint64_t len, void *recv);
    /* The `len` bytes at `buf` on rank 0 are copied into `buf` on every other rank. */
    int (*broadcast)(void *user, void *buf, uint64_t len);
    /* Optional (may be NULL): called once by shardpoint_comm_free. */
    void (*destroy)(void *user);
} shardpoint_comm_callbacks;

#define SHARDPOINT_COMM_CALLBACKS_INIT {SHARDPOINT_COMM_CALLBACKS_VERSION, 0, 1, NULL, NULL, NULL, NULL}

/* Fills *callbacks with defaults for the given version. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_comm_callbacks_init(shardpoint_comm_callbacks *callbacks, uint32_t version);

/* A communicator over caller-supplied collectives. The struct is copied; `user` is borrowed until
 * shardpoint_comm_free. Errors: SHARDPOINT_EINVAL (bad version, rank or size, missing callback),
 * SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_comm_new_callbacks(shardpoint_comm **out, const shardpoint_comm_callbacks *callbacks);

/* This communicator's rank and size. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_comm_rank(const shardpoint_comm *comm, int32_t *out_rank);
SHARDPOINT_API int shardpoint_comm_size(const shardpoint_comm *comm, int32_t *out_size);

/* Frees a communicator (calls its destroy callback). Accepts NULL. The communicator must not be
 * in use by an unfinished save or load. */
SHARDPOINT_API void shardpoint_comm_free(shardpoint_comm *comm);

/* ---------------------------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------------------------- */

/* Save flags. Saves are durable by default: data files, the metadata, the checkpoint directory
 * and every directory on its path are fsynced before the save returns success,
 * and the previous checkpoint's files are removed only after that. */
#define SHARDPOINT_SAVE_OVERWRITE 0x1u /* replace a checkpoint already at the path */
#define SHARDPOINT_SAVE_FSYNC 0x2u     /* accepted for compatibility: durability is the default */
/* Skip every fsync. Faster, and safe against a crash of the process, but NOT against a power
 * loss or a kernel crash: after one, the new checkpoint, and with OVERWRITE the previous one
 * too, may be lost or unreadable. Use only for checkpoints you can afford to lose. */
#define SHARDPOINT_SAVE_NO_FSYNC 0x4u
/* Accept tensors whose saved chunks (from all ranks together) leave part of the global shape
 * uncovered. Without it such a save fails with SHARDPOINT_EUNCOVERED before any byte is written. */
#define SHARDPOINT_SAVE_ALLOW_PARTIAL 0x8u

/* Codecs (shardpoint_save_options.codec, options version 2).
 * SHARDPOINT_CODEC_DEFAULT: what version 1 did: compression_level 0 stores raw, 1..9 deflates.
 * SHARDPOINT_CODEC_DEFLATE_STREAM: one zlib stream per chunk, read whole (readable by every format 1
 *   reader; compresses on one core per chunk).
 * SHARDPOINT_CODEC_ZLIB, SHARDPOINT_CODEC_ZSTD: every block (64 KiB) compressed alone, so a chunk
 *   compresses and decompresses on all cores and a partial load restores only its blocks; blocks
 *   compression does not shrink are stored raw. Such checkpoints are format 2 (FORMAT.md 4, 6).
 * Levels: zlib and deflate 1..9, zstd 1..19; 0 is the codec's default (deflate 6, zlib 1, zstd 1). */
#define SHARDPOINT_CODEC_DEFAULT 0
#define SHARDPOINT_CODEC_DEFLATE_STREAM 1
#define SHARDPOINT_CODEC_ZLIB 2
#define SHARDPOINT_CODEC_ZSTD 3

/* Filters (shardpoint_save_options.filters, options version 2). */
/* Byte-shuffle each block of a tensor before compressing it (byte k of every element together):
 * floats compress much better. Only with SHARDPOINT_CODEC_ZLIB or SHARDPOINT_CODEC_ZSTD. */
#define SHARDPOINT_FILTER_SHUFFLE 0x1u

/* Version 2 appended codec and filters; version 1 structs are still accepted. */
#define SHARDPOINT_SAVE_OPTIONS_VERSION 2

typedef struct shardpoint_save_options {
    uint32_t version;            /* SHARDPOINT_SAVE_OPTIONS_VERSION (or 1: without the last two fields) */
    uint32_t flags;              /* SHARDPOINT_SAVE_* */
    int32_t compression_level;   /* SHARDPOINT_CODEC_DEFAULT: 0 stores raw (default), 1..9 deflates;
                                    another codec: its level, 0 for its default */
    uint32_t io_threads;         /* worker threads for I/O, checksums and compression; 0: one per core */
    uint64_t alignment;          /* alignment in bytes of every extent at least that long, a power of
                                    two; 0: 4096. Shorter extents are packed at 64 (FORMAT.md 4) */
    const char *checkpoint_id;   /* recorded in the metadata (copied by shardpoint_save_new);
                                    NULL: the directory's name */
    uint32_t codec;              /* version 2: SHARDPOINT_CODEC_* */
    uint32_t filters;            /* version 2: SHARDPOINT_FILTER_* */
} shardpoint_save_options;

#define SHARDPOINT_SAVE_OPTIONS_INIT {SHARDPOINT_SAVE_OPTIONS_VERSION, 0, 0, 0, 0, NULL, 0, 0}

/* Fills *options with defaults for the given version (1 or 2). Errors: SHARDPOINT_EINVAL.
 * Save errors of bad options (SHARDPOINT_EINVAL): an unknown version, flag, codec or filter, a level
 * out of the codec's range, the shuffle without a block codec. */
SHARDPOINT_API int shardpoint_save_options_init(shardpoint_save_options *options, uint32_t version);

/* A save in progress: add what this rank holds, then commit. */
typedef struct shardpoint_save shardpoint_save;

/* Starts a save of a checkpoint into directory `dir` (created if missing, parents included).
 * `comm` may be NULL (single process); it is borrowed until shardpoint_save_free. `options` may be
 * NULL (defaults); it is copied. Nothing is written before shardpoint_save_commit.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_save_new(shardpoint_save **out, const char *dir, shardpoint_comm *comm,
                                       const shardpoint_save_options *options);

/* Offers one chunk of tensor `fqn`: the box at `chunk_offsets` with `chunk_sizes` (ndim values each)
 * of a tensor of `global_shape`. ndim may be 0 (a scalar: the three arrays may then be NULL).
 * `data` points at the chunk's first element; `strides` (ndim element strides, or NULL for C
 * order) locate the others. The memory is read during shardpoint_save_commit and must stay valid
 * and unchanged until it returns. A rank may offer several chunks of the same tensor; ranks that
 * offer the identical chunk (a replicated tensor) have it written once.
 * Errors: SHARDPOINT_EINVAL (bad name or dtype, NULL data for a non-empty chunk),
 * SHARDPOINT_ESHAPE (ndim too large, chunk outside the global shape),
 * SHARDPOINT_ECONFLICT (this rank already offered an overlapping chunk or a different tensor under
 * this name), SHARDPOINT_ESTATE (already committed). */
SHARDPOINT_API int shardpoint_save_add_tensor(shardpoint_save *save, const char *fqn, int32_t dtype, uint32_t ndim,
                                              const uint64_t *global_shape, const uint64_t *chunk_offsets,
                                              const uint64_t *chunk_sizes, const void *data,
                                              const int64_t *strides);

/* One chunk of a batched add: the arguments of shardpoint_save_add_tensor, with two shorthands
 * for the common case of a whole tensor: `chunk_offsets` NULL means all zeros and `chunk_sizes`
 * NULL means `global_shape`. Later versions may append fields; callers pass the size of the struct
 * they were compiled with (see shardpoint_save_add_tensors). */
typedef struct shardpoint_tensor_chunk {
    const char *fqn;
    int32_t dtype;
    uint32_t ndim;
    const uint64_t *global_shape;
    const uint64_t *chunk_offsets;
    const uint64_t *chunk_sizes;
    const void *data;
    const int64_t *strides;
} shardpoint_tensor_chunk;

/* Offers `count` chunks at once, as `count` calls of shardpoint_save_add_tensor would, at a fraction
 * of the per-call cost for callers whose calls are dear (Python, many small tensors). All or
 * nothing: when one chunk is refused, none of them is kept, and the error message names the
 * chunk's position ("item 17 of the batch: ..."). `chunk_struct_size` is
 * sizeof(shardpoint_tensor_chunk) as the caller compiled it (the array's stride).
 * Errors: those of shardpoint_save_add_tensor; SHARDPOINT_EINVAL also for a NULL `chunks` with
 * count > 0 or a `chunk_struct_size` smaller than version 1 of the struct. */
SHARDPOINT_API int shardpoint_save_add_tensors(shardpoint_save *save, const shardpoint_tensor_chunk *chunks,
                                               uint64_t count, size_t chunk_struct_size);

/* Offers an opaque byte blob under `fqn`. Same lifetime rule as tensor data. If several ranks
 * offer a blob under the same name they must offer identical lengths; one of them is written.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ECONFLICT, SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_save_add_bytes(shardpoint_save *save, const char *fqn, const void *data, uint64_t len);

/* Records a user key/value pair in the metadata (the coordinator's pairs are the ones kept;
 * setting a key twice keeps the last value). Both strings are copied.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_save_set_metadata(shardpoint_save *save, const char *key, const char *value);

/* Collective. Plans globally (deduplicates replicated chunks, rejects conflicts and, unless
 * ALLOW_PARTIAL, uncovered tensors before any byte is written), writes every rank's data in
 * parallel, then commits the metadata atomically (FORMAT.md section 5). Saves into one directory
 * are serialized by an exclusive flock(2) on the directory; without OVERWRITE exactly one of several
 * concurrent saves into the same new directory succeeds and the others fail with
 * SHARDPOINT_EEXISTS, leaving nothing behind. A successful save removes the files of the
 * checkpoint it replaced and the debris of earlier killed saves (files with shardpoint's own
 * name patterns that no committed metadata names; see shardpoint_gc).
 * On any failure before the commit point nothing is committed, this save's files are removed, and
 * a checkpoint that was at `dir` before is still intact and loadable. (One exception: when the
 * communicator itself fails after a rank other than 0 wrote its data, that rank cannot know whether
 * rank 0 committed, so it keeps its data file; the next save or shardpoint_gc removes it.)
 * SHARDPOINT_ENOTDURABLE is the one failure after the commit point: the new checkpoint exists.
 * A save handle can be committed once.
 * Errors: SHARDPOINT_EEXISTS, SHARDPOINT_ECONFLICT, SHARDPOINT_EUNCOVERED, SHARDPOINT_EIO,
 * SHARDPOINT_ENOSPC, SHARDPOINT_ENOTDURABLE, SHARDPOINT_ERANK (another rank failed: the message
 * names the rank and the step), SHARDPOINT_ECOMM, SHARDPOINT_ESTATE, SHARDPOINT_ENOMEM,
 * SHARDPOINT_ERANGE (the metadata would exceed the 1 GiB readers accept: nothing is committed),
 * SHARDPOINT_ECANCELED (the progress callback asked to stop: nothing is committed). */
SHARDPOINT_API int shardpoint_save_commit(shardpoint_save *save);

/* Frees a save handle (committed or not; an uncommitted save writes nothing). Waits for an
 * asynchronous commit to end (it is not canceled: call shardpoint_save_cancel first for that).
 * Accepts NULL. */
SHARDPOINT_API void shardpoint_save_free(shardpoint_save *save);

/* ---------------------------------------------------------------------------------------------
 * Asynchronous saves
 *
 * shardpoint_save_commit_async copies this rank's data into a staging area and returns: from
 * then on the caller may change its memory (train the next step) while the library writes and
 * commits in the background. The outcome is shardpoint_save_commit's, collective as before, and
 * comes from shardpoint_save_wait. A staging area is allocated once and reused: its pages are
 * faulted in at creation (on huge pages where the kernel gives them, locked in memory where
 * allowed), so that a save's copy runs at memory speed.
 * ------------------------------------------------------------------------------------------- */

/* Unlike other handles, a staging area may be passed to shardpoint_save_commit_async from several
 * threads at once: the saves take turns (each waits until the one before it ended). */
typedef struct shardpoint_staging shardpoint_staging;

/* A staging area of `capacity` bytes. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_staging_new(shardpoint_staging **out, uint64_t capacity);
/* Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_staging_capacity(const shardpoint_staging *staging, uint64_t *out_capacity);
/* Frees the area, after waiting for an asynchronous save still using it. Accepts NULL. */
SHARDPOINT_API void shardpoint_staging_free(shardpoint_staging *staging);

/* The bytes of staging this rank's data takes: what was added so far, each item 64-byte aligned.
 * Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_save_staging_size(const shardpoint_save *save, uint64_t *out_bytes);

/* Copies this rank's data into `staging` (on the save's I/O threads), then commits in the
 * background and returns; the data's memory is not read again. A staging area serves one save at a
 * time: while an earlier asynchronous save still uses it, this call first waits for that save to
 * end (so saves never queue up without bound). Collective as shardpoint_save_commit: every rank
 * calls it (or, on some ranks, shardpoint_save_commit). Until shardpoint_save_wait returns, the
 * communicator is used from the library's background thread and must not be used by anything
 * else (with MPI: a communicator of its own, MPI_Comm_dup, and MPI_THREAD_MULTIPLE); a progress
 * callback is called on that thread. `staging` must stay alive until the save ends (freeing it
 * waits). Errors (nothing is started, and the save can still be committed either way):
 * SHARDPOINT_ERANGE (the data does not fit in the area), SHARDPOINT_ESTATE (already committed),
 * SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_save_commit_async(shardpoint_save *save, shardpoint_staging *staging);

/* Blocks until the asynchronous commit ends; returns its outcome, as shardpoint_save_commit
 * would have (the last error is set on the calling thread). Later calls return the same.
 * Errors: those of shardpoint_save_commit; SHARDPOINT_ESTATE when no asynchronous commit was
 * started. */
SHARDPOINT_API int shardpoint_save_wait(shardpoint_save *save);

/* *out_finished: 1 once the asynchronous commit ended (shardpoint_save_wait then returns at once),
 * else 0. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE (none started). */
SHARDPOINT_API int shardpoint_save_poll(shardpoint_save *save, int32_t *out_finished);

/* Asks the asynchronous commit to stop and returns at once: unless this rank's data was already
 * written, the save fails with SHARDPOINT_ECANCELED (the other ranks with SHARDPOINT_ERANK),
 * nothing is committed and the previous checkpoint stays; once the data is written it commits.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE (none started). */
SHARDPOINT_API int shardpoint_save_cancel(shardpoint_save *save);

/* ---------------------------------------------------------------------------------------------
 * Progress and cancellation
 * ------------------------------------------------------------------------------------------- */

/* What a long operation is doing when it reports progress. */
typedef enum shardpoint_progress_phase {
    SHARDPOINT_PROGRESS_WRITE = 1,  /* a save writing this rank's data (raw bytes of its chunks) */
    SHARDPOINT_PROGRESS_READ = 2,   /* a load reading this rank's requests (bytes read; raw bytes
                                       for compressed data) */
    SHARDPOINT_PROGRESS_VERIFY = 3, /* a verify checking stored bytes */
    SHARDPOINT_PROGRESS_CONVERT = 4 /* a conversion to or from safetensors (tensor bytes copied) */
} shardpoint_progress_phase;

/* `done` of `total` bytes of `phase` are through on this rank. Called on the thread that called
 * the operation, never on an I/O thread (for shardpoint_save_commit_async: on the library's
 * background thread that commits): once at the start (done 0), then at most every 50 ms,
 * then once with done == total when every byte is through (for a save: after the data file's
 * fsync). `done` never decreases. Return 0 to go on, anything else to cancel: the I/O threads stop
 * before their next piece of work and the operation fails with SHARDPOINT_ECANCELED (with a
 * communicator, the other ranks fail with SHARDPOINT_ERANK). A canceled save commits nothing and
 * removes its files; the checkpoint that was in the directory before is untouched. */
typedef int (*shardpoint_progress_callback)(void *user, int32_t phase, uint64_t done, uint64_t total);

/* Reports the write of shardpoint_save_commit to `callback` (NULL: no reports). Set before the
 * commit. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE (already committed). */
SHARDPOINT_API int shardpoint_save_set_progress(shardpoint_save *save, shardpoint_progress_callback callback, void *user);

/* ---------------------------------------------------------------------------------------------
 * Reading metadata
 * ------------------------------------------------------------------------------------------- */

/* Load flags. */
#define SHARDPOINT_LOAD_NO_VERIFY 0x1u     /* skip CRC-32 checks of tensor and blob bytes */
#define SHARDPOINT_LOAD_ALLOW_PARTIAL 0x2u /* requests for entries not in the checkpoint are skipped */

#define SHARDPOINT_LOAD_OPTIONS_VERSION 1

typedef struct shardpoint_load_options {
    uint32_t version;    /* SHARDPOINT_LOAD_OPTIONS_VERSION */
    uint32_t flags;      /* SHARDPOINT_LOAD_* */
    uint32_t io_threads; /* worker threads for reads and checksums; 0: one per core */
} shardpoint_load_options;

#define SHARDPOINT_LOAD_OPTIONS_INIT {SHARDPOINT_LOAD_OPTIONS_VERSION, 0, 0}

/* Fills *options with defaults for the given version. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_load_options_init(shardpoint_load_options *options, uint32_t version);

/* An open checkpoint: its validated metadata and the directory its files are in. */
typedef struct shardpoint_reader shardpoint_reader;

/* Opens the checkpoint in `dir`: reads and validates the metadata (header, CRC-32, version,
 * every offset, length, path and chunk bound) without touching tensor bytes. `options` may be
 * NULL; it is copied and applies to reads through this reader.
 * The reader also opens its first 256 data files (the others when first read) and keeps them open
 * until it is freed, so that it keeps reading the checkpoint it opened even after an overwrite
 * save replaces it (POSIX keeps an unlinked file readable while it is open). A data file that
 * cannot be opened does not make this call fail: its error (SHARDPOINT_ENOTFOUND, _EPATH, _EIO)
 * comes from the read that needs it, and when a missing file was deleted by a save that replaced
 * the checkpoint after this reader opened it, the message says so.
 * Errors: SHARDPOINT_ENOTFOUND (no metadata file), SHARDPOINT_EFORMAT, SHARDPOINT_ECHECKSUM
 * (metadata CRC), SHARDPOINT_EVERSION, SHARDPOINT_EPATH, SHARDPOINT_ESHAPE, SHARDPOINT_EIO,
 * SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_reader_open(shardpoint_reader **out, const char *dir,
                                          const shardpoint_load_options *options);

/* As shardpoint_reader_open, collective over `comm` (NULL or one rank: exactly
 * shardpoint_reader_open): rank 0 alone reads and validates the metadata file and broadcasts it, so
 * a job of N ranks on a shared filesystem makes one metadata read instead of N. Every rank still
 * validates what it receives and opens the data files itself. When rank 0 fails, every rank fails
 * with rank 0's error code (other ranks' messages begin "rank 0 reading the metadata:").
 * Errors: those of shardpoint_reader_open, SHARDPOINT_ECOMM. */
SHARDPOINT_API int shardpoint_reader_open_shared(shardpoint_reader **out, const char *dir,
                                                 const shardpoint_load_options *options, shardpoint_comm *comm);

/* Frees a reader. Accepts NULL. Loads created from it must be freed first. */
SHARDPOINT_API void shardpoint_reader_free(shardpoint_reader *reader);

/* What the checkpoint says about the save that made it. Strings are owned by the reader. */
typedef struct shardpoint_storage_info {
    const char *checkpoint_id;
    const char *save_id;        /* unique per save */
    const char *library_version;/* of the library that wrote it */
    int64_t created_unix_ns;    /* when the metadata was committed */
    int32_t world_size;         /* ranks that saved it */
    uint32_t format_major;
    uint32_t format_minor;
    uint32_t alignment;         /* extent alignment used by the writer (for extents that long) */
    uint64_t file_count;        /* data files */
    uint64_t total_stored_bytes;/* sum of stored extent lengths */
} shardpoint_storage_info;

/* Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_storage_info(const shardpoint_reader *reader, shardpoint_storage_info *out);

typedef struct shardpoint_file_info {
    const char *name;   /* data file name relative to the checkpoint directory (owned by the reader) */
    uint64_t size;      /* its size in bytes when the checkpoint was committed */
    int32_t rank;       /* the rank that wrote it */
    uint32_t reserved;
} shardpoint_file_info;

/* Data file `index` (0 <= index < shardpoint_storage_info.file_count).
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE. */
SHARDPOINT_API int shardpoint_reader_file_info(const shardpoint_reader *reader, uint64_t index, shardpoint_file_info *out);

/* Entry kinds. */
#define SHARDPOINT_ENTRY_TENSOR 0
#define SHARDPOINT_ENTRY_BYTES 1

typedef struct shardpoint_entry_info {
    const char *fqn;           /* owned by the reader */
    int32_t kind;              /* SHARDPOINT_ENTRY_* */
    int32_t dtype;             /* tensors: shardpoint_dtype; bytes: -1 */
    uint32_t ndim;             /* tensors: number of dimensions; bytes: 0 */
    uint32_t reserved;
    const uint64_t *shape;     /* ndim values, owned by the reader (NULL when ndim is 0) */
    uint64_t chunk_count;      /* saved chunks (bytes entries: 1) */
    uint64_t numel;            /* elements of the global shape (bytes: the length) */
    uint64_t nbytes;           /* raw bytes of the whole tensor or blob */
    uint64_t stored_bytes;     /* bytes on disk (differs from nbytes when compressed) */
    uint64_t covered_numel;    /* elements covered by saved chunks; < numel: partly saved */
} shardpoint_entry_info;

/* Number of entries, sorted by fqn (byte order). Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_entry_count(const shardpoint_reader *reader, uint64_t *out_count);
/* Entry `index` (0 <= index < count). Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE (index). */
SHARDPOINT_API int shardpoint_reader_entry_info(const shardpoint_reader *reader, uint64_t index,
                                                shardpoint_entry_info *out);
/* The index of entry `fqn`. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOTFOUND. */
SHARDPOINT_API int shardpoint_reader_find(const shardpoint_reader *reader, const char *fqn, uint64_t *out_index);

/* Transforms applied to stored extents. */
#define SHARDPOINT_TRANSFORM_NONE 0
#define SHARDPOINT_TRANSFORM_DEFLATE 1     /* one zlib stream per extent */
#define SHARDPOINT_TRANSFORM_ZLIB_BLOCKS 2 /* format 2: each block alone, zlib */
#define SHARDPOINT_TRANSFORM_ZSTD_BLOCKS 3 /* format 2: each block alone, zstd */

typedef struct shardpoint_chunk_info {
    const uint64_t *offsets;   /* ndim values, owned by the reader (NULL when ndim is 0) */
    const uint64_t *sizes;     /* ndim values, owned by the reader (NULL when ndim is 0) */
    const char *file;          /* data file name relative to the checkpoint directory */
    uint64_t file_offset;      /* where the stored bytes start */
    uint64_t stored_length;    /* bytes in the file */
    uint64_t raw_length;       /* bytes after undoing the transform */
    uint32_t crc32;            /* CRC-32 of the stored bytes */
    int32_t transform;         /* SHARDPOINT_TRANSFORM_* */
    int32_t writer_rank;       /* the rank that wrote it */
    uint32_t shuffle_width;    /* block transforms: the byte shuffle's element size; 0: no shuffle */
} shardpoint_chunk_info;

/* Chunk `chunk` of entry `index` (a bytes entry has one chunk with ndim 0). `offsets` and `sizes`
 * have the entry's ndim values (see shardpoint_entry_info).
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE. */
SHARDPOINT_API int shardpoint_reader_chunk_info(const shardpoint_reader *reader, uint64_t index, uint64_t chunk,
                                                shardpoint_chunk_info *out);

/* Bulk forms of the two calls above, for hosts that build their own metadata of checkpoints with
 * many entries (one call instead of one per entry or chunk). */

/* Every entry's fqn in index order, each followed by a NUL byte, as one buffer of `*out_len` bytes
 * (NULs included) owned by the reader. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_entry_names(const shardpoint_reader *reader, const char **out_names,
                                                 uint64_t *out_len);

/* The boxes of chunks first .. first+count-1 of entry `index`: chunk first+k's offsets go to
 * offsets[k*ndim .. k*ndim+ndim-1] and its sizes to the same places of `sizes` (count*ndim values
 * each; nothing is written for bytes entries and 0-dimensional tensors, where the arrays may be NULL).
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE (index, or chunks beyond the entry's chunk_count). */
SHARDPOINT_API int shardpoint_reader_chunk_boxes(const shardpoint_reader *reader, uint64_t index, uint64_t first,
                                                 uint64_t count, uint64_t *offsets, uint64_t *sizes);

/* Number of user key/value pairs. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_metadata_count(const shardpoint_reader *reader, uint64_t *out_count);
/* Pair `index`; the strings are owned by the reader. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE. */
SHARDPOINT_API int shardpoint_reader_metadata_at(const shardpoint_reader *reader, uint64_t index,
                                                 const char **out_key, const char **out_value);
/* The value for `key`. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOTFOUND. */
SHARDPOINT_API int shardpoint_reader_metadata_get(const shardpoint_reader *reader, const char *key,
                                                  const char **out_value);

/* Reports the reader's verifies (shardpoint_reader_verify, shardpoint_reader_verify_each) to
 * `callback` (NULL: no reports), on the thread of each verify: a host that verifies from several
 * threads at once gets calls from each. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_set_progress(shardpoint_reader *reader, shardpoint_progress_callback callback,
                                                  void *user);

/* Reads every stored extent of the checkpoint and checks its CRC-32 (ignores NO_VERIFY). Safe to
 * call concurrently with the reader's other functions.
 * Errors: SHARDPOINT_ECHECKSUM, SHARDPOINT_ETRUNCATED, SHARDPOINT_ENOTFOUND (missing data file),
 * SHARDPOINT_EFORMAT (an extent does not inflate to its raw length), SHARDPOINT_EIO,
 * SHARDPOINT_ECANCELED; the message names the entry and the file. */
SHARDPOINT_API int shardpoint_reader_verify(shardpoint_reader *reader);

/* One problem found by shardpoint_reader_verify_each. Strings are valid during the callback. */
typedef struct shardpoint_verify_problem {
    const char *fqn;      /* the entry whose bytes are bad */
    uint64_t chunk;       /* the chunk of that entry (0 for a bytes entry) */
    const char *file;     /* the data file holding it */
    uint64_t file_offset; /* the first bad byte range found in this extent: its start ... */
    uint64_t length;      /* ... and length, in the data file */
    int32_t code;         /* SHARDPOINT_ECHECKSUM, _ETRUNCATED, _ENOTFOUND, _EFORMAT or _EIO */
    uint32_t reserved;
    const char *message;  /* what is wrong, with the numbers */
} shardpoint_verify_problem;

/* Return 0 to continue, anything else to stop verifying. */
typedef int (*shardpoint_verify_callback)(void *user, const shardpoint_verify_problem *problem);

/* Like shardpoint_reader_verify, but checks every extent and reports each bad one (one report per
 * bad extent) to `callback` (may be NULL), in metadata order, on the calling thread.
 * *out_problems (may be NULL) receives how many were found. Returns 0 when every extent checks,
 * else the code of the first problem (the last error then summarizes them all).
 * Errors: as shardpoint_reader_verify, SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_verify_each(shardpoint_reader *reader, shardpoint_verify_callback callback,
                                                 void *user, uint64_t *out_problems);

/* The number of bytes each block CRC-32 covers (FORMAT.md section 4). Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_reader_block_size(const shardpoint_reader *reader, uint32_t *out_block_size);

/* ---------------------------------------------------------------------------------------------
 * Garbage collection
 * ------------------------------------------------------------------------------------------- */

#define SHARDPOINT_GC_DRY_RUN 0x1u /* only report what would be removed */

/* Called once per unreferenced file (its name inside the directory and its size), before it is
 * removed. Return 0 to continue (remove it), anything else to stop (it and the rest are kept). */
typedef int (*shardpoint_gc_callback)(void *user, const char *name, uint64_t size);

/* Removes the debris of unfinished saves from checkpoint directory `dir`: files named with
 * shardpoint's own patterns (`data-<32 hex>-r<rank>.bin`, `shardpoint.meta.tmp-<32 hex>`) that the
 * committed metadata does not name. Nothing else is ever touched. Waits for a save into `dir` in
 * progress (its flock on the directory) so that its files are never taken for debris; with DRY_RUN it takes no
 * lock, so files of a save in progress are reported too. `callback` may be NULL; `out_files` and
 * `out_bytes` (may be NULL) receive the count and total size of the files removed (or reported).
 * When `dir` holds metadata that fails validation nothing is removed.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOTFOUND (no such directory), SHARDPOINT_EIO, and the
 * errors of shardpoint_reader_open for damaged metadata. */
SHARDPOINT_API int shardpoint_gc(const char *dir, uint32_t flags, shardpoint_gc_callback callback, void *user,
                                 uint64_t *out_files, uint64_t *out_bytes);

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

/* A set of read requests executed together (planned with an interval index, adjacent byte ranges
 * merged, parallel reads). */
typedef struct shardpoint_load shardpoint_load;

/* Starts a load from `reader` (borrowed until shardpoint_load_free). `comm` may be NULL (single
 * process), else shardpoint_load_execute is collective over it. Errors: SHARDPOINT_EINVAL,
 * SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_load_new(shardpoint_load **out, shardpoint_reader *reader, shardpoint_comm *comm);

/* Requests the box (`box_offsets`, `box_sizes`: ndim values each) of tensor `fqn` into `dst`,
 * whose first element receives the box's first element and whose `strides` (ndim element
 * strides, NULL for C order) place the others. `dtype` and `ndim` must match the saved tensor:
 * nothing is converted. `dst` is written during shardpoint_load_execute.
 * Errors: SHARDPOINT_ENOTFOUND (unless ALLOW_PARTIAL), SHARDPOINT_EKIND, SHARDPOINT_EDTYPE,
 * SHARDPOINT_ESHAPE (wrong ndim or box outside the tensor), SHARDPOINT_EUNCOVERED (part of the
 * box was never saved), SHARDPOINT_EINVAL, SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_load_add_tensor(shardpoint_load *load, const char *fqn, int32_t dtype, uint32_t ndim,
                                              const uint64_t *box_offsets, const uint64_t *box_sizes, void *dst,
                                              const int64_t *strides);

/* One request of a batched load: the arguments of shardpoint_load_add_tensor; `box_sizes` NULL
 * requests the whole saved tensor (`box_offsets` is then ignored; `dst` must hold it all).
 * Versioned by size as shardpoint_tensor_chunk. */
typedef struct shardpoint_tensor_request {
    const char *fqn;
    int32_t dtype;
    uint32_t ndim;
    const uint64_t *box_offsets;
    const uint64_t *box_sizes;
    void *dst;
    const int64_t *strides;
} shardpoint_tensor_request;

/* Adds `count` requests at once, all or nothing, as shardpoint_save_add_tensors. With
 * ALLOW_PARTIAL, requests for missing entries are skipped (not an error), as one by one.
 * `request_struct_size` is sizeof(shardpoint_tensor_request) as the caller compiled it.
 * Errors: those of shardpoint_load_add_tensor; SHARDPOINT_EINVAL as shardpoint_save_add_tensors. */
SHARDPOINT_API int shardpoint_load_add_tensors(shardpoint_load *load, const shardpoint_tensor_request *requests,
                                               uint64_t count, size_t request_struct_size);

/* Requests blob `fqn` into `dst` of `capacity` bytes (at least the blob's length, see
 * shardpoint_entry_info.nbytes). Errors: SHARDPOINT_ENOTFOUND (unless ALLOW_PARTIAL),
 * SHARDPOINT_EKIND, SHARDPOINT_ERANGE (capacity too small), SHARDPOINT_EINVAL, SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_load_add_bytes(shardpoint_load *load, const char *fqn, void *dst, uint64_t capacity);

/* Requests skipped because ALLOW_PARTIAL was set and their entry is missing. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_load_skipped_count(const shardpoint_load *load, uint64_t *out_count);

/* Collective when the load has a communicator. Reads every requested byte (verifying CRC-32
 * unless NO_VERIFY) into the destinations. Can be called once. On failure the destinations may
 * hold partial data. Errors: SHARDPOINT_ECHECKSUM, SHARDPOINT_ETRUNCATED, SHARDPOINT_ENOTFOUND
 * (missing data file), SHARDPOINT_EFORMAT, SHARDPOINT_EIO, SHARDPOINT_ERANK, SHARDPOINT_ECOMM,
 * SHARDPOINT_ESTATE, SHARDPOINT_ECANCELED. */
SHARDPOINT_API int shardpoint_load_execute(shardpoint_load *load);

/* Reports the read of shardpoint_load_execute to `callback` (NULL: no reports). Set before the
 * execute. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE (already executed). */
SHARDPOINT_API int shardpoint_load_set_progress(shardpoint_load *load, shardpoint_progress_callback callback, void *user);

/* Frees a load. Accepts NULL. */
SHARDPOINT_API void shardpoint_load_free(shardpoint_load *load);

/* Convenience: one shardpoint_load with one tensor request, executed (not collective). */
SHARDPOINT_API int shardpoint_reader_read_tensor(shardpoint_reader *reader, const char *fqn, int32_t dtype,
                                                 uint32_t ndim, const uint64_t *box_offsets,
                                                 const uint64_t *box_sizes, void *dst, const int64_t *strides);

/* Convenience: reads blob `fqn` into `dst` (capacity bytes); its length goes to *out_len.
 * Errors: as shardpoint_load_add_bytes and shardpoint_load_execute. */
SHARDPOINT_API int shardpoint_reader_read_bytes(shardpoint_reader *reader, const char *fqn, void *dst,
                                                uint64_t capacity, uint64_t *out_len);

/* ---------------------------------------------------------------------------------------------
 * Checkpoint manager: the steps of a training run under one root directory, and their retention.
 *
 * A root holds one ordinary checkpoint directory per step, "step-<N>" (N in decimal, no leading
 * zeros). Saving a step is an ordinary save into ROOT/step-N, so every save option, flag and
 * guarantee applies (asynchronous saves too). After a step is committed, retention deletes the
 * committed steps that the manager's options no longer keep. In a job of several ranks:
 *
 *   every rank:  shardpoint_manager_open(&m, root, comm, &options)
 *   every rank:  shardpoint_manager_save_new(&save, m, step, &save_options)
 *                shardpoint_save_add_tensor(save, ...), ...
 *                shardpoint_save_commit(save)                 collective, as every save
 *   every rank:  shardpoint_manager_apply_retention(m, ...)   only rank 0 of `comm` deletes
 *
 * Retention is not collective: on rank 0 of the manager's communicator it deletes, on the other
 * ranks it returns at once, so that SPMD code may call it everywhere. Call it only after the
 * commit succeeded (after shardpoint_save_wait for an asynchronous save).
 *
 * The state of a step: committed (its metadata is committed and valid and every data file it
 * names is present), partial (no metadata, or one that is not a checkpoint: a save in progress or
 * the debris of a killed one) or damaged (the metadata fails validation or a data file is missing
 * or short). Only committed steps count as saved; partial and damaged ones are listed so that
 * they can be seen and removed.
 *
 * Deletion is crash-safe: under the step's save lock (taken without waiting: a step a save holds
 * is never deleted), the directory is renamed to a hidden name ".deleting-step-N-<16 hex>" (it
 * vanishes from listings at once: a step is listed whole or not at all), the parent is fsynced,
 * then the metadata and every other file are removed. A process killed during a deletion leaves
 * the hidden directory: garbage that the next retention or shardpoint_manager_gc removes.
 * A reader open on a deleted step keeps reading it (see shardpoint_reader_open: the data files it
 * opened stay readable; the first 256 are opened by shardpoint_reader_open itself).
 * ------------------------------------------------------------------------------------------- */

typedef struct shardpoint_manager shardpoint_manager;

/* Manager flags. */
#define SHARDPOINT_MANAGER_CREATE 0x1u /* create the root (and its parents) when it is missing */

/* How best_metric ranks steps. */
#define SHARDPOINT_METRIC_MIN 0 /* smaller values are better (a loss) */
#define SHARDPOINT_METRIC_MAX 1 /* larger values are better (an accuracy) */

#define SHARDPOINT_MANAGER_OPTIONS_VERSION 1

/* Retention keeps a committed step when any enabled rule keeps it, and always keeps the newest
 * committed step. With every rule off (the defaults) it deletes no committed step. */
typedef struct shardpoint_manager_options {
    uint32_t version;        /* SHARDPOINT_MANAGER_OPTIONS_VERSION */
    uint32_t flags;          /* SHARDPOINT_MANAGER_* */
    uint64_t keep_last;      /* keep the newest keep_last committed steps; 0: rule off */
    uint64_t keep_every;     /* keep the steps whose number is a multiple of keep_every; 0: off */
    uint64_t keep_best;      /* keep the keep_best best steps by best_metric; 0: off */
    const char *best_metric; /* user metadata key (shardpoint_save_set_metadata) holding a decimal
                                number ("0.183"); steps without it, or with another value, never
                                count as best. Needed with keep_best, else NULL. Copied. */
    int32_t best_mode;       /* SHARDPOINT_METRIC_MIN or SHARDPOINT_METRIC_MAX; on equal values
                                the newer step is better */
    uint32_t reserved;       /* 0 */
} shardpoint_manager_options;

#define SHARDPOINT_MANAGER_OPTIONS_INIT {SHARDPOINT_MANAGER_OPTIONS_VERSION, 0, 0, 0, 0, NULL, SHARDPOINT_METRIC_MIN, 0}

/* Fills *options with defaults for the given version. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_manager_options_init(shardpoint_manager_options *options, uint32_t version);

/* Opens a manager on directory `root` (created with SHARDPOINT_MANAGER_CREATE). `comm` may be
 * NULL (a single process); it is borrowed until shardpoint_manager_free and gives the saves of
 * shardpoint_manager_save_new their communicator and retention its rank 0. `options` may be NULL
 * (no retention rule); it is copied. Not collective: every rank opens its own manager.
 * Errors: SHARDPOINT_ENOTFOUND (no such directory), SHARDPOINT_EINVAL (not a directory, a bad
 * option: unknown version or flag, keep_best without best_metric or the reverse, a bad
 * best_mode), SHARDPOINT_EIO, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_manager_open(shardpoint_manager **out, const char *root, shardpoint_comm *comm,
                                           const shardpoint_manager_options *options);

/* Frees a manager. Accepts NULL. Saves made from it stay valid (they do not borrow it). */
SHARDPOINT_API void shardpoint_manager_free(shardpoint_manager *manager);

/* The directory of step `step` ("ROOT/step-N"), whether it exists or not. The string is owned by
 * the manager and valid until the next call of this function or shardpoint_manager_free.
 * Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_manager_step_path(shardpoint_manager *manager, uint64_t step, const char **out_path);

/* Starts the save of step `step`: exactly shardpoint_save_new(out, ROOT/step-N, comm of the
 * manager, options). Commit and free it as any save. A committed step is refused at commit
 * (SHARDPOINT_EEXISTS) unless options ask for SHARDPOINT_SAVE_OVERWRITE.
 * Errors: those of shardpoint_save_new. */
SHARDPOINT_API int shardpoint_manager_save_new(shardpoint_save **out, shardpoint_manager *manager, uint64_t step,
                                               const shardpoint_save_options *options);

/* The highest committed step. Errors: SHARDPOINT_ENOTFOUND (no committed step), SHARDPOINT_EIO,
 * SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_manager_latest_step(shardpoint_manager *manager, uint64_t *out_step);

/* States of a step (shardpoint_step_info.state). */
#define SHARDPOINT_STEP_COMMITTED 0
#define SHARDPOINT_STEP_PARTIAL 1
#define SHARDPOINT_STEP_DAMAGED 2

typedef struct shardpoint_step_info {
    uint64_t step;
    int32_t state;        /* SHARDPOINT_STEP_* */
    int32_t busy;         /* 1: a save held the step's lock when it was listed (being written) */
    const char *path;     /* ROOT/step-N */
    uint64_t bytes;       /* total size of the files in the step's directory */
    uint64_t disk_bytes;  /* the space they take on disk (allocated blocks) */
    uint64_t file_count;  /* regular files in the step's directory */
    int64_t time_unix_ns; /* committed: when its metadata was committed; else the directory's mtime */
    const char *metric;   /* committed: the value of best_metric, NULL when absent or not asked for */
    const char *message;  /* partial, damaged: what is wrong ("" for committed steps) */
} shardpoint_step_info;

/* Lists the steps of the root now, in ascending step order, into a snapshot the manager keeps
 * (read it with shardpoint_manager_step_info); *out_count (may be NULL) receives their number.
 * Lists directories named step-<N> only (never a deletion in progress, never other entries).
 * Opens every step's metadata, not its tensor bytes (no checksums are verified), and tries each
 * step's save lock for an instant, without waiting, to tell whether a save holds it (busy).
 * Errors: SHARDPOINT_ENOTFOUND (the root is gone), SHARDPOINT_EIO, SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_manager_list(shardpoint_manager *manager, uint64_t *out_count);

/* Step `index` of the last shardpoint_manager_list. Strings are owned by the manager and valid
 * until the next list or shardpoint_manager_free. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE. */
SHARDPOINT_API int shardpoint_manager_step_info(const shardpoint_manager *manager, uint64_t index,
                                                shardpoint_step_info *out);

/* Deletes step `step` crash-safely (see above), whatever its state and whatever retention would
 * keep: an explicit deletion, on the calling rank (not rank-0 gated). Returns when its files are
 * removed. Errors: SHARDPOINT_ENOTFOUND (no such step), SHARDPOINT_ESTATE (a save holds the
 * step's lock: nothing was touched), SHARDPOINT_EIO, SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_manager_delete_step(shardpoint_manager *manager, uint64_t step);

#define SHARDPOINT_RETENTION_DRY_RUN 0x1u /* only report what would be deleted; takes no lock */

/* Called for every step retention deletes (its number and its bytes), before its deletion.
 * Return 0 to delete it, anything else to stop (it and the rest are kept). */
typedef int (*shardpoint_retention_callback)(void *user, uint64_t step, uint64_t bytes);

/* On rank 0 of the manager's communicator (always without one): deletes the committed steps the
 * options do not keep (never the newest committed step), and the partial steps below the newest
 * committed one that hold nothing but a killed save's debris, skipping any step a save holds
 * (it is not waited for: the next retention gets it); removes the leftovers of killed deletions.
 * Damaged steps are never deleted (shardpoint_manager_delete_step does). On other ranks it does
 * nothing and *out_deleted is 0. Not collective. `callback` may be NULL; *out_deleted (may be
 * NULL) receives the number of steps deleted (with DRY_RUN: that would be).
 * Errors: SHARDPOINT_EINVAL (unknown flags), SHARDPOINT_ENOTFOUND (the root is gone),
 * SHARDPOINT_EIO; steps deleted before a failure stay deleted. */
SHARDPOINT_API int shardpoint_manager_apply_retention(shardpoint_manager *manager, uint32_t flags,
                                                      shardpoint_retention_callback callback, void *user,
                                                      uint64_t *out_deleted);

/* shardpoint_gc for a whole root: removes the leftovers of killed deletions (reported as
 * ".deleting-step-N-<hex>/" with their total size), the debris of killed saves inside every step
 * that no save holds ("step-N/data-<hex>-r00000.bin"; steps a save holds are skipped, not waited
 * for), and partial steps below the newest committed step that held nothing but such debris
 * ("step-N/"). Damaged steps are left as they are. Flags, callback and out-parameters as for
 * shardpoint_gc (SHARDPOINT_GC_DRY_RUN: only report). Not rank-0 gated.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOTFOUND (the root is gone), SHARDPOINT_EIO. */
SHARDPOINT_API int shardpoint_manager_gc(shardpoint_manager *manager, uint32_t flags, shardpoint_gc_callback callback,
                                         void *user, uint64_t *out_files, uint64_t *out_bytes);

/* Deletes checkpoint directory `dir` (one that holds a shardpoint.meta file, valid or not) as
 * crash-safely as a step: renamed to ".deleting-<name>-<16 hex>" beside it, then removed (a
 * leftover is removed by shardpoint_manager_gc on the parent). Everything in the directory goes.
 * Errors: SHARDPOINT_ENOTFOUND (no such directory, or no metadata file in it), SHARDPOINT_ESTATE
 * (a save holds its lock), SHARDPOINT_EINVAL, SHARDPOINT_EIO. */
SHARDPOINT_API int shardpoint_checkpoint_delete(const char *dir);

/* ---------------------------------------------------------------------------------------------
 * Conversion to and from safetensors
 *
 * safetensors is Hugging Face's tensor file: an 8-byte little-endian header length N, N bytes of
 * JSON (dtype, shape and byte range of every tensor, plus a "__metadata__" object of string
 * pairs), then the tensors' bytes. A sharded model is a directory of model-0000k-of-0000n.safetensors
 * files plus model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map":
 * {tensor: file}}). Values are copied bit for bit; dtypes map by name (BOOL U8 I8 I16 I32 I64 U16
 * U32 U64 F16 BF16 F32 F64, C64 = complex64, F8_E4M3 = f8_e4m3fn, F8_E5M2 = f8_e5m2); complex128 has
 * no safetensors dtype, and safetensors' F4, F6_*, F8_E8M0 and *FNUZ have no shardpoint one.
 * User metadata and "__metadata__" map to each other. Memory stays bounded: tensors are copied in
 * pieces of at most buffer_size bytes, never whole, through two buffers. These functions are single-process (no
 * communicator) and may be called from several threads for distinct outputs.
 * ------------------------------------------------------------------------------------------- */

/* Conversion flags. */
#define SHARDPOINT_CONVERT_OVERWRITE 0x1u  /* replace what is at the output: a safetensors file,
                                              the safetensors model of a directory, a checkpoint */
#define SHARDPOINT_CONVERT_SKIP_BYTES 0x2u /* to safetensors: leave bytes entries out (without it
                                              a checkpoint holding one is refused, SHARDPOINT_EKIND) */
#define SHARDPOINT_CONVERT_NO_FSYNC 0x4u   /* skip every fsync (see SHARDPOINT_SAVE_NO_FSYNC) */

#define SHARDPOINT_CONVERT_OPTIONS_VERSION 1

typedef struct shardpoint_convert_options {
    uint32_t version;         /* SHARDPOINT_CONVERT_OPTIONS_VERSION */
    uint32_t flags;           /* SHARDPOINT_CONVERT_* */
    uint64_t max_shard_size;  /* to safetensors: 0 writes one file; else a sharded model directory
                                 whose files hold at most this many tensor bytes each (a larger
                                 tensor gets a file of its own) */
    uint64_t buffer_size;     /* bytes of tensor data per copy buffer, at least 4096; 0: 64 MiB.
                                 Two buffers are used (one is read while the other is written):
                                 the conversion holds about twice this. From safetensors: also
                                 the largest chunk of the checkpoint (a larger tensor is saved as
                                 several chunks) */
    const shardpoint_save_options *save_options; /* from safetensors: how the checkpoint is saved
                                 (codec, alignment, ...; NULL: defaults; read during the call);
                                 OVERWRITE and NO_FSYNC above are added to its flags */
    shardpoint_progress_callback progress; /* NULL: no reports; phase SHARDPOINT_PROGRESS_CONVERT */
    void *progress_user;      /* passed to `progress` */
    uint32_t io_threads;      /* threads of the checkpoint's reads (to safetensors) or writes
                                 (from, unless save_options sets them); 0: one per core */
    uint32_t reserved;        /* 0 */
} shardpoint_convert_options;

#define SHARDPOINT_CONVERT_OPTIONS_INIT {SHARDPOINT_CONVERT_OPTIONS_VERSION, 0, 0, 0, NULL, NULL, NULL, 0, 0}

/* Fills *options with defaults for the given version. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_convert_options_init(shardpoint_convert_options *options, uint32_t version);

/* Writes every tensor of the checkpoint in `ckpt_dir`, whole (its chunks from any number of ranks
 * put together; CRC-32 verified), and its user metadata as "__metadata__", to `out_path`:
 *  - a file path (max_shard_size 0): that one safetensors file;
 *  - an existing directory, or a path ending in '/' (max_shard_size 0): DIR/model.safetensors;
 *  - max_shard_size > 0: the directory `out_path` (created if missing) gets
 *    model-0000k-of-0000n.safetensors files (tensors in name order, a new file whenever the next
 *    tensor would pass max_shard_size) and model.safetensors.index.json, even when n is 1.
 * Other files in the directory (config.json, ...) are left alone. Inside a file, tensors are
 * ordered by decreasing element size, then name, so that every tensor is aligned to its element.
 * Each file is written under a temporary name (FILE.tmp-<32 hex>) and renamed into place once all
 * are complete (the index last); missing directories are created. On any failure, cancel
 * included, no output file is left and directories it created are removed. With OVERWRITE the
 * model already in the directory (model.safetensors, the index and the shard files it names) is
 * replaced: its files that the new model does not reuse are removed after the renames.
 * `options` may be NULL (defaults). Progress reports count tensor bytes copied; a nonzero return,
 * the last report's included, cancels.
 * Errors: SHARDPOINT_EKIND (a bytes entry, without SKIP_BYTES), SHARDPOINT_EDTYPE (complex128),
 * SHARDPOINT_EUNCOVERED (a tensor only partly saved), SHARDPOINT_EEXISTS (the output exists,
 * without OVERWRITE), SHARDPOINT_ECANCELED, SHARDPOINT_EINVAL (bad options; a tensor named
 * "__metadata__"; a name or metadata string that is not UTF-8), SHARDPOINT_ERANGE (a header above
 * safetensors' 100 MB limit), the errors of shardpoint_reader_open and shardpoint_load_execute,
 * SHARDPOINT_EIO, SHARDPOINT_ENOSPC. The message names the tensor or file concerned. */
SHARDPOINT_API int shardpoint_convert_to_safetensors(const char *ckpt_dir, const char *out_path,
                                                     const shardpoint_convert_options *options);

/* Saves the tensors of safetensors input `in_path` as a checkpoint in `ckpt_dir`, with the files'
 * "__metadata__" as user metadata (a sharded model repeats it in every file: the first file's
 * value of a key wins). `in_path` is a safetensors file; an index (a path ending in .json) whose
 * weight_map names files beside it; or a model directory (its model.safetensors, else its
 * model.safetensors.index.json). Every file is validated before anything is written: header length
 * within the file and safetensors' 100 MB limit, valid JSON without duplicate keys, known dtypes,
 * data_offsets that match dtype and shape and index every data byte exactly once (no overlap, no
 * gap, nothing after the last tensor), and for an index: each tensor in the file the weight_map
 * names. The checkpoint is written by the library's own save (atomic commit; on any failure,
 * cancel included, nothing is committed, the save's files are removed, a checkpoint that was
 * there is intact, and directories this call created are removed). `options` may be NULL.
 * Errors: SHARDPOINT_EFORMAT (malformed or truncated input; the message names the file and the
 * tensor), SHARDPOINT_EDTYPE (a dtype shardpoint lacks, or unknown), SHARDPOINT_ESHAPE (more than
 * 32 dimensions, or too large), SHARDPOINT_EPATH (the index names a file outside its directory),
 * SHARDPOINT_ENOTFOUND (no input, or a file the index names is missing), SHARDPOINT_EINVAL (bad
 * options; a name the checkpoint cannot hold: empty, with NUL, over 4096 bytes),
 * SHARDPOINT_EEXISTS, SHARDPOINT_ECANCELED, and the errors of shardpoint_save_commit. */
SHARDPOINT_API int shardpoint_convert_from_safetensors(const char *in_path, const char *ckpt_dir,
                                                       const shardpoint_convert_options *options);

/* Parses a byte count as Hugging Face writes max_shard_size: a whole number with an optional
 * unit, decimal (B, KB, MB, GB, TB: powers of 1000) or binary (KiB, MiB, GiB, TiB: powers of
 * 1024), in any case, e.g. "5GB", "500MB", "64KiB", "4096". Errors: SHARDPOINT_EINVAL (NULL, not
 * a size, or above 2^64 - 1). */
SHARDPOINT_API int shardpoint_parse_size(const char *text, uint64_t *out_bytes);

/* ---------------------------------------------------------------------------------------------
 * The storage layer: StorageWriter phases for frameworks that bring their own planner and
 * collectives (torch.distributed.checkpoint, JAX trainers, MPI codes). shardpoint_save_commit
 * runs exactly these phases over a shardpoint_comm. Call sequence, on every rank unless marked:
 *
 *   shardpoint_writer_new            reset: a new save of the checkpoint in a directory
 *   shardpoint_writer_set_up         this rank and the world size (rank 0 is the coordinator)
 *   shardpoint_writer_add_tensor/_add_bytes/_set_metadata   what this rank holds
 *   shardpoint_writer_local_plan     -> this rank's local plan: send it to the coordinator
 *   shardpoint_writer_global_plan    coordinator: every rank's local plan -> final plans
 *   shardpoint_writer_final_plan     coordinator: rank r's final plan: send it to rank r
 *   shardpoint_writer_write          this rank's final plan -> write results: send to the coordinator
 *   shardpoint_writer_finish         coordinator: every rank's write results -> committed checkpoint
 *   shardpoint_writer_abort          on any failure before the commit, on every rank
 *
 * Plans and write results are Cap'n Proto messages of the format's schema (SavePlanMessage,
 * WriteResultsMessage; FORMAT.md section 7): opaque byte strings the host moves with its own
 * collectives. The library never communicates between ranks in these calls; agreeing on the
 * outcome (every rank learning that some rank failed) is the host's job. Byte strings returned
 * are owned by the writer and valid until it is freed or the same function is called again.
 * ------------------------------------------------------------------------------------------- */

typedef struct shardpoint_writer shardpoint_writer;

/* A new save into directory `dir` (created at set up). `options` as for shardpoint_save_new
 * (copied; NULL: defaults). Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_writer_new(shardpoint_writer **out, const char *dir, const shardpoint_save_options *options);

/* Frees a writer (an unfinished save is not aborted: call shardpoint_writer_abort). Accepts NULL. */
SHARDPOINT_API void shardpoint_writer_free(shardpoint_writer *writer);

/* This rank's place in the save. Creates the directory. Errors: SHARDPOINT_EINVAL (rank not in
 * [0, world_size)), SHARDPOINT_EIO, SHARDPOINT_ENOSPC, SHARDPOINT_ESTATE (not the first call). */
SHARDPOINT_API int shardpoint_writer_set_up(shardpoint_writer *writer, int32_t rank, int32_t world_size);

/* As shardpoint_save_add_tensor, _add_bytes and _set_metadata; the memory is read during
 * shardpoint_writer_write. Allowed until shardpoint_writer_local_plan. */
SHARDPOINT_API int shardpoint_writer_add_tensor(shardpoint_writer *writer, const char *fqn, int32_t dtype, uint32_t ndim,
                                                const uint64_t *global_shape, const uint64_t *chunk_offsets,
                                                const uint64_t *chunk_sizes, const void *data, const int64_t *strides);
SHARDPOINT_API int shardpoint_writer_add_bytes(shardpoint_writer *writer, const char *fqn, const void *data, uint64_t len);
SHARDPOINT_API int shardpoint_writer_set_metadata(shardpoint_writer *writer, const char *key, const char *value);

/* Framework metadata (FORMAT.md: Checkpoint.frameworkMetadata): what a host framework needs to
 * rebuild its own metadata, stored in the checkpoint under a key of its own ("torch.dcp"). The
 * coordinator's pairs are kept. Errors: SHARDPOINT_EINVAL (NULL, NUL), SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_writer_set_framework_metadata(shardpoint_writer *writer, const char *key, const char *value);

/* Items whose data comes later, for hosts that resolve their data only when writing (DCP): the
 * same checks as _add_tensor, but no memory yet; a bytes item's length is unknown until bound
 * (several ranks planning bytes under one name: one of them writes it). Items, added or planned,
 * are numbered 0, 1, 2, ... in call order on this writer. Allowed until the local plan.
 * Errors: as shardpoint_writer_add_tensor / _add_bytes. */
SHARDPOINT_API int shardpoint_writer_plan_tensor(shardpoint_writer *writer, const char *fqn, int32_t dtype, uint32_t ndim,
                                                 const uint64_t *global_shape, const uint64_t *chunk_offsets,
                                                 const uint64_t *chunk_sizes);
SHARDPOINT_API int shardpoint_writer_plan_bytes(shardpoint_writer *writer, const char *fqn);

/* The numbers of this rank's items that its final plan assigns to it (to bind before writing).
 * The array is owned by the writer until it is freed or this is called again.
 * Errors: SHARDPOINT_EINVAL (malformed plan, or another rank's), SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_writer_assigned(shardpoint_writer *writer, const void *final_plan, uint64_t len,
                                              const uint32_t **out_items, uint64_t *out_count);

/* Gives planned item `item` its memory: a tensor chunk at `data` with element `strides` (NULL: C
 * order), or `len` bytes. Read during shardpoint_writer_write; must stay valid until it returns.
 * Errors: SHARDPOINT_ERANGE (no such item), SHARDPOINT_ESTATE (not planned without data, or the
 * wrong kind, or after write), SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_writer_bind_tensor(shardpoint_writer *writer, uint64_t item, const void *data,
                                                 const int64_t *strides);
SHARDPOINT_API int shardpoint_writer_bind_bytes(shardpoint_writer *writer, uint64_t item, const void *data, uint64_t len);

/* This rank's local plan (every item it offers). Errors: SHARDPOINT_ESTATE (not set up, or
 * already planned), SHARDPOINT_EINVAL, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_writer_local_plan(shardpoint_writer *writer, const void **out_plan, uint64_t *out_len);

/* Coordinator only, after its own local plan: `count` local plans, plan r from rank r
 * (`plans[r]`, `lens[r]` bytes; borrowed for the call). Deduplicates replicated chunks, refuses
 * conflicts and (unless ALLOW_PARTIAL) uncovered tensors, takes the directory's save lock (held
 * until the writer is freed), refuses an existing checkpoint unless OVERWRITE, names the files.
 * Errors: SHARDPOINT_EINVAL (a malformed plan, count != world size), SHARDPOINT_ECONFLICT,
 * SHARDPOINT_EUNCOVERED, SHARDPOINT_EEXISTS, SHARDPOINT_ESTATE, SHARDPOINT_EIO. */
SHARDPOINT_API int shardpoint_writer_global_plan(shardpoint_writer *writer, uint32_t count, const void *const *plans,
                                                 const uint64_t *lens);

/* Coordinator only, after shardpoint_writer_global_plan: rank `rank`'s final plan.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE (rank), SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_writer_final_plan(const shardpoint_writer *writer, uint32_t rank, const void **out_plan,
                                                uint64_t *out_len);

/* Writes what this rank's final plan (from the coordinator) assigns it, straight from the memory
 * given to _add_tensor/_add_bytes, and returns the write results for the coordinator.
 * Errors: SHARDPOINT_EINVAL (malformed plan, or another rank's), SHARDPOINT_EIO, SHARDPOINT_ENOSPC,
 * SHARDPOINT_ESTATE, SHARDPOINT_ENOMEM. */
SHARDPOINT_API int shardpoint_writer_write(shardpoint_writer *writer, const void *final_plan, uint64_t len,
                                           const void **out_results, uint64_t *out_len);

/* Writes the items of this rank's final plan bound so far and not yet written; their memory is
 * not read again once this returns. For hosts that stage their data (GPU tensors, converted
 * dtypes, a conversion tool) and want bounded memory: bind a batch, write it with this, free or
 * reuse its memory, bind the next batch, ...; shardpoint_writer_write then writes the rest and
 * returns the write results of every item. Every write call of one save passes the same final
 * plan. Errors: as shardpoint_writer_write, and SHARDPOINT_ESTATE after a failed write (the save
 * can only be aborted then). */
SHARDPOINT_API int shardpoint_writer_write_bound(shardpoint_writer *writer, const void *final_plan, uint64_t len);

/* Coordinator only, after its own write: `count` write results, results r from rank r (a
 * zero-length one: rank r wrote nothing). Builds the
 * metadata and commits it (FORMAT.md section 5). Errors: as shardpoint_save_commit (except
 * SHARDPOINT_ERANK and SHARDPOINT_ECOMM), SHARDPOINT_EINVAL (malformed results). */
SHARDPOINT_API int shardpoint_writer_finish(shardpoint_writer *writer, uint32_t count, const void *const *results,
                                            const uint64_t *lens);

/* Removes this rank's files of this save (its data file; on the coordinator also the temporary
 * metadata). Does nothing once the coordinator committed. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_writer_abort(shardpoint_writer *writer);

/* Reports this rank's writes (shardpoint_writer_write_bound and shardpoint_writer_write, one
 * total for the whole plan) to `callback` (NULL: no reports). Set before the first write.
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ESTATE (a write already started). */
SHARDPOINT_API int shardpoint_writer_set_progress(shardpoint_writer *writer, shardpoint_progress_callback callback,
                                                  void *user);

/* 1 once shardpoint_writer_finish published the metadata (even if it then returned
 * SHARDPOINT_ENOTDURABLE), else 0. Errors: SHARDPOINT_EINVAL. */
SHARDPOINT_API int shardpoint_writer_committed(const shardpoint_writer *writer, int32_t *out_committed);

/* ---------------------------------------------------------------------------------------------
 * The storage layer: StorageReader. A host framework reads the metadata through the reader
 * functions above (entries, chunks), plans its own reads, and hands shardpoint each ReadItem: a
 * box inside one saved chunk and where it goes. shardpoint_load_execute then reads them all
 * (merged, parallel, verified) like any load.
 * ------------------------------------------------------------------------------------------- */

/* The framework metadata stored under `key` (see shardpoint_writer_set_framework_metadata); owned
 * by the reader. Errors: SHARDPOINT_EINVAL, SHARDPOINT_ENOTFOUND. */
SHARDPOINT_API int shardpoint_reader_framework_metadata_get(const shardpoint_reader *reader, const char *key,
                                                            const char **out_value);

/* The index (for shardpoint_reader_chunk_info and shardpoint_load_add_chunk) of the saved chunk of
 * entry `index` whose box starts at `offsets` (ndim values: DCP's MetadataIndex.offset).
 * Errors: SHARDPOINT_EINVAL, SHARDPOINT_ERANGE (entry index), SHARDPOINT_ESHAPE (ndim),
 * SHARDPOINT_ENOTFOUND (no chunk starts there). */
SHARDPOINT_API int shardpoint_reader_find_chunk(shardpoint_reader *reader, uint64_t index, uint32_t ndim,
                                                const uint64_t *offsets, uint64_t *out_chunk);

/* Requests the box (`storage_offsets`, `lengths`: ndim values each, relative to the chunk) of
 * saved chunk `chunk` of tensor `fqn` into `dst`, whose first element receives the box's first
 * element and whose `strides` (NULL: C order) place the others. `dtype` must be the stored one.
 * Written during shardpoint_load_execute. Errors: SHARDPOINT_ENOTFOUND (unless ALLOW_PARTIAL),
 * SHARDPOINT_EKIND, SHARDPOINT_EDTYPE, SHARDPOINT_ERANGE (chunk index), SHARDPOINT_ESHAPE (ndim,
 * or the box leaves the chunk), SHARDPOINT_EINVAL, SHARDPOINT_ESTATE. */
SHARDPOINT_API int shardpoint_load_add_chunk(shardpoint_load *load, const char *fqn, int32_t dtype, uint64_t chunk,
                                             uint32_t ndim, const uint64_t *storage_offsets, const uint64_t *lengths,
                                             void *dst, const int64_t *strides);

#ifdef __cplusplus
}
#endif

#endif /* SHARDPOINT_H */
