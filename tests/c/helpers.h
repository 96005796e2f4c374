/* Shared helpers of the C test suite: temporary directories, the deterministic byte generator,
 * strided fill/check of boxes, small file utilities, error assertions and a pthread-based
 * communicator that runs ranks as threads of this process. */
#ifndef SP_TEST_HELPERS_H
#define SP_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shardpoint.h"

/* --- assertions ---------------------------------------------------------------------------- */

/* Fails the test with the library's code and message unless `expr` returns SHARDPOINT_OK. */
#define SP_OK(expr)                                                                                 \
    do {                                                                                            \
        int sp_rc_ = (expr);                                                                        \
        if (sp_rc_ != SHARDPOINT_OK)                                                                \
            fail_msg("%s:%d: %s returned %s: %s", __FILE__, __LINE__, #expr,                        \
                     shardpoint_error_name(sp_rc_), shardpoint_last_error());                       \
    } while (0)

/* Asserts that `expr` fails with `code`, that the thread's last error agrees, and that the message
 * is informative: non-trivial and containing `needle` (may be NULL). */
#define SP_FAILS(expr, code, needle)                                                                \
    do {                                                                                            \
        int sp_rc_ = (expr);                                                                        \
        sp_check_failure(sp_rc_, (code), (needle), #expr, __FILE__, __LINE__);                      \
    } while (0)

void sp_check_failure(int rc, int want, const char *needle, const char *expr, const char *file, int line);

/* --- temporary directories and paths -------------------------------------------------------- */

/* A new empty directory under $TMPDIR (or /tmp); malloc'd path. */
char *tmp_dir_new(const char *tag);
/* Removes the tree at `path` (if any) and frees `path`. Accepts NULL. */
void tmp_dir_remove(char *path);
/* cmocka fixtures: *state becomes a fresh temporary directory (char *), removed afterwards. */
int dir_setup(void **state);
int dir_teardown(void **state);
/* "a/b", malloc'd. */
char *path_join(const char *a, const char *b);

/* --- files ---------------------------------------------------------------------------------- */

/* The whole file, malloc'd (at least 1 byte allocated); NULL if it cannot be read. */
unsigned char *read_file(const char *path, size_t *len);
int write_file(const char *path, const void *data, size_t len);
/* -1 when missing. */
long long file_size(const char *path);
int file_exists(const char *path);
/* XORs the byte at `offset` with 0xff. */
int flip_byte(const char *path, long long offset);
/* Names of the regular files in `dir`, sorted, in one malloc'd array of `count` malloc'd strings.
 * Returns 0 (also for a missing directory: count 0). */
int list_files(const char *dir, char ***names, size_t *count);
void free_names(char **names, size_t count);
/* Number of entries in `dir` (files and directories), -1 when it does not exist. */
int count_dir_entries(const char *dir);
/* Sum of the sizes of the files named data-*.bin in `dir`, and how many there are. */
long long data_files_total(const char *dir, int *count);

/* A checkpoint directory's state: its metadata bytes and its file names. */
typedef struct snapshot {
    unsigned char *meta;
    size_t meta_len;
    char **names;
    size_t count;
} snapshot;
void take_snapshot(const char *dir, snapshot *s);
/* Fails the test unless the directory is exactly as in `before`: same metadata bytes, same files. */
void assert_unchanged(const char *dir, snapshot *before);
void free_snapshot(snapshot *s);

/* --- the generator ------------------------------------------------------------------------- */

/* byte(k) = (k * 131 + seed * 17 + (k >> 11)) mod 256, then mod 2 for bool: the golden rule,
 * where k indexes the C-order little-endian byte image of the whole tensor or blob. */
static inline unsigned char gen_byte(uint64_t k, uint32_t seed, int is_bool) {
    unsigned char b = (unsigned char)((k * 131u + (uint64_t)seed * 17u + (k >> 11)) & 0xffu);
    return is_bool ? (unsigned char)(b & 1u) : b;
}
/* Bytes [first, first + n) of a generated blob. */
void gen_fill(void *dst, uint64_t n, uint64_t first, uint32_t seed, int is_bool);
/* Number of bytes of `buf` that differ from bytes [first, first + n) of the generated blob. */
uint64_t gen_check(const void *buf, uint64_t n, uint64_t first, uint32_t seed, int is_bool);

/* A tensor: its generated content is a function of (seed, dtype, shape). */
typedef struct tdesc {
    const char *fqn;
    int32_t dtype;
    uint32_t ndim;
    uint64_t shape[SHARDPOINT_MAX_NDIM];
    uint32_t seed;
} tdesc;

uint64_t numel_of(uint32_t ndim, const uint64_t *sizes);
uint64_t tdesc_nbytes(const tdesc *t);
/* Writes the generated elements of the box (`offsets`, `sizes`) of tensor `t` into memory at
 * `base` laid out by element `strides` (NULL: C order of `sizes`). `base` addresses the box's
 * first element. */
void fill_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes, void *base, const int64_t *strides);
/* Bytes of the strided box at `base` that differ from the generator. */
uint64_t check_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes, const void *base,
                   const int64_t *strides);
/* A malloc'd C-order buffer holding the generated box (at least 1 byte allocated). */
void *make_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes);
/* part(n, r, W) = [floor(r n / W), floor((r + 1) n / W)) */
static inline uint64_t part_lo(uint64_t n, int r, int w) { return n * (uint64_t)r / (uint64_t)w; }
static inline uint64_t part_len(uint64_t n, int r, int w) { return part_lo(n, r + 1, w) - part_lo(n, r, w); }

/* --- simple save / load of whole tensors ----------------------------------------------------- */

/* Saves every tensor of `ts` whole (and commits) into `dir` with `options`. */
int save_whole(const char *dir, const tdesc *ts, size_t count, const shardpoint_save_options *options);
/* Loads tensor `t` whole through a reader and returns mismatching bytes (or UINT64_MAX on error,
 * with the code in *rc when rc is not NULL). */
uint64_t load_whole_mismatches(shardpoint_reader *reader, const tdesc *t, int *rc);

#include "thread_group.h"

/* What one rank observed; filled by the rank's thread, asserted by the main thread. */
typedef struct rank_result {
    int rc;             /* the first failing shardpoint code, 0 when none */
    char message[1024]; /* its message, or a description of a failed check */
    uint64_t mismatches;/* bytes that differed from the generator */
    uint64_t checked;   /* bytes compared */
} rank_result;

/* Records a failed call in `res` (the first one wins). Returns rc. */
int rank_note(rank_result *res, int rc, const char *what);

typedef void (*rank_fn)(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res);
/* Runs fn on `world` threads (one per rank, each with its communicator) and joins them. `results`
 * receives `world` rank_results. Returns 0, or -1 if the threads or communicators could not be
 * created. */
int run_ranks(int world, rank_fn fn, void *arg, rank_result *results);

#endif
