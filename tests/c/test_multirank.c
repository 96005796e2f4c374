/* Several ranks, as threads of this process talking through the callback communicator:
 * 4 ranks save row-, column-, 2-D block-sharded, replicated and rank-private entries; 3, 2 and 1
 * ranks load them back resharded and compare every byte with the generator; conflicting offers
 * and failing ranks make every rank fail with the right code while nothing is committed.
 *
 * How a rank is made to fail for real in the middle of a save: the test lowers RLIMIT_FSIZE (the
 * largest file this process may write; SIGXFSZ ignored so the write returns EFBIG) below the size
 * of one rank's data file, while every other file stays far below it. That rank's pwrite then
 * fails inside the library after planning succeeded and while the other ranks are writing: a real
 * I/O error, not a mocked one. (chmod does not stop root, and data file names are random per
 * save, so they cannot be pre-created.) */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* The model the 4 ranks save. */
static const tdesc ROWS = {"m.rows", SHARDPOINT_DTYPE_F32, 2, {10, 6}, 1};
static const tdesc COLS = {"m.cols", SHARDPOINT_DTYPE_BF16, 2, {5, 9}, 2};
static const tdesc BLOCK = {"m.block", SHARDPOINT_DTYPE_I32, 2, {8, 6}, 3};
static const tdesc REPL = {"m.repl", SHARDPOINT_DTYPE_F64, 2, {128, 256}, 4}; /* 256 KiB, on every rank */
static const tdesc STEP = {"m.step", SHARDPOINT_DTYPE_I64, 0, {0}, 5};        /* replicated scalar */
enum { SAVE_WORLD = 4, SHARED_BLOB_LEN = 777, SHARED_BLOB_SEED = 30 };

static tdesc private_tensor(int rank, char *name) {
    sprintf(name, "private.r%d", rank);
    tdesc t = {name, SHARDPOINT_DTYPE_I64, 2, {(uint64_t)rank + 1, 3}, 10 + (uint32_t)rank};
    return t;
}
static uint64_t private_blob_len(int rank) { return 100 * (uint64_t)rank; } /* rank 0: empty */
static uint32_t private_blob_seed(int rank) { return 20 + (uint32_t)rank; }

static uint64_t model_unique_bytes(void) {
    uint64_t n = tdesc_nbytes(&ROWS) + tdesc_nbytes(&COLS) + tdesc_nbytes(&BLOCK) + tdesc_nbytes(&REPL) + 8 +
                 SHARED_BLOB_LEN;
    for (int r = 0; r < SAVE_WORLD; ++r) n += (uint64_t)(r + 1) * 3 * 8 + private_blob_len(r);
    return n;
}

/* Buffers a rank keeps alive until its commit returns. */
typedef struct offers {
    void *bufs[16];
    int count;
} offers;

static int offer_box(shardpoint_save *s, offers *keep, const tdesc *t, const uint64_t *off, const uint64_t *sz) {
    if (numel_of(t->ndim, sz) == 0) return 0; /* an empty part offers nothing */
    void *b = make_box(t, off, sz);
    keep->bufs[keep->count++] = b;
    return shardpoint_save_add_tensor(s, t->fqn, t->dtype, t->ndim, t->shape, off, sz, b, NULL);
}

static int offer_blob(shardpoint_save *s, offers *keep, const char *fqn, uint64_t len, uint32_t seed) {
    void *b = malloc(len ? len : 1);
    gen_fill(b, len, 0, seed, 0);
    keep->bufs[keep->count++] = b;
    return shardpoint_save_add_bytes(s, fqn, len ? b : NULL, len);
}

/* Rank r's offers of the model. */
static int offer_model(shardpoint_save *s, offers *keep, int r, int w) {
    int rc = 0;
    uint64_t off[2], sz[2];
    /* rows */
    off[0] = part_lo(ROWS.shape[0], r, w), off[1] = 0;
    sz[0] = part_len(ROWS.shape[0], r, w), sz[1] = ROWS.shape[1];
    if (!rc) rc = offer_box(s, keep, &ROWS, off, sz);
    /* columns */
    off[0] = 0, off[1] = part_lo(COLS.shape[1], r, w);
    sz[0] = COLS.shape[0], sz[1] = part_len(COLS.shape[1], r, w);
    if (!rc) rc = offer_box(s, keep, &COLS, off, sz);
    /* a 2 x (w / 2) grid of blocks */
    const int grid_rows = 2, grid_cols = w / 2;
    off[0] = part_lo(BLOCK.shape[0], r / grid_cols, grid_rows), off[1] = part_lo(BLOCK.shape[1], r % grid_cols, grid_cols);
    sz[0] = part_len(BLOCK.shape[0], r / grid_cols, grid_rows), sz[1] = part_len(BLOCK.shape[1], r % grid_cols, grid_cols);
    if (!rc) rc = offer_box(s, keep, &BLOCK, off, sz);
    /* replicated */
    if (!rc) rc = offer_box(s, keep, &REPL, ZEROS, REPL.shape);
    if (!rc) rc = offer_box(s, keep, &STEP, ZEROS, NULL);
    if (!rc) rc = offer_blob(s, keep, "blob.shared", SHARED_BLOB_LEN, SHARED_BLOB_SEED);
    /* rank-private */
    char name[32], blob_name[32];
    tdesc mine = private_tensor(r, name);
    if (!rc) rc = offer_box(s, keep, &mine, ZEROS, mine.shape);
    sprintf(blob_name, "blob.r%d", r);
    if (!rc) rc = offer_blob(s, keep, blob_name, private_blob_len(r), private_blob_seed(r));
    if (!rc) rc = shardpoint_save_set_metadata(s, "world", "4");
    if (!rc) rc = shardpoint_save_set_metadata(s, "writer", r == 0 ? "coordinator" : "worker");
    if (!rc && r == 1) rc = shardpoint_save_set_metadata(s, "only.rank1", "x");
    return rc;
}

typedef struct save_job {
    const char *dir;
    uint32_t flags;
    int (*offer)(shardpoint_save *s, offers *keep, int rank, int world, void *arg);
    void *arg;
    const char *dir_of_rank[8]; /* optional per-rank directory (a misconfigured rank) */
} save_job;

static int offer_model_job(shardpoint_save *s, offers *keep, int r, int w, void *arg) {
    (void)arg;
    return offer_model(s, keep, r, w);
}

static void save_rank(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    save_job *job = arg;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = job->flags;
    o.io_threads = 2;
    const char *dir = job->dir_of_rank[rank] ? job->dir_of_rank[rank] : job->dir;
    shardpoint_save *s = NULL;
    if (rank_note(res, shardpoint_save_new(&s, dir, comm, &o), "save_new")) return; /* cannot happen: args are valid */
    offers keep = {{0}, 0};
    rank_note(res, job->offer(s, &keep, rank, world, job->arg), "offer");
    /* commit even after a failed offer: it is collective */
    rank_note(res, shardpoint_save_commit(s), "commit");
    shardpoint_save_free(s);
    for (int i = 0; i < keep.count; ++i) free(keep.bufs[i]);
}

static void assert_all_ok(const rank_result *res, int world) {
    for (int r = 0; r < world; ++r)
        if (res[r].rc != 0) fail_msg("rank %d: %s", r, res[r].message);
}

static void save_model(const char *dir, uint32_t flags) {
    save_job job = {dir, flags, offer_model_job, NULL, {0}};
    rank_result res[SAVE_WORLD];
    assert_int_equal(run_ranks(SAVE_WORLD, save_rank, &job, res), 0);
    assert_all_ok(res, SAVE_WORLD);
}

/* --- resharded loads ------------------------------------------------------------------------------ */

enum layout { BY_ROWS, BY_COLS, WHOLE };

typedef struct load_job {
    const char *dir;
    enum layout layout;
    uint32_t flags;
    int shared_open; /* shardpoint_reader_open_shared over the ranks' communicator */
} load_job;

typedef struct request {
    tdesc t;
    char name[32];
    uint64_t off[2], sz[2];
    int64_t strides[2];
    int strided;
    void *dst;
} request;

static void load_rank(int r, int w, shardpoint_comm *comm, void *arg, rank_result *res) {
    load_job *job = arg;
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = job->flags;
    shardpoint_reader *reader = NULL;
    int opened = job->shared_open ? shardpoint_reader_open_shared(&reader, job->dir, &lo, comm)
                                  : shardpoint_reader_open(&reader, job->dir, &lo);
    if (rank_note(res, opened, "reader_open")) return;
    shardpoint_load *load = NULL;
    if (rank_note(res, shardpoint_load_new(&load, reader, comm), "load_new")) {
        shardpoint_reader_free(reader);
        return;
    }
    request reqs[16];
    int n = 0;
    const tdesc *grid[4] = {&ROWS, &COLS, &BLOCK, &REPL};
    for (int i = 0; i < 4 + SAVE_WORLD; ++i) {
        request *q = &reqs[n++];
        memset(q, 0, sizeof *q);
        if (i < 4) q->t = *grid[i];
        else q->t = private_tensor(i - 4, q->name);
        if (i >= 4) q->t.fqn = q->name;
        const uint64_t *shape = q->t.shape;
        q->off[0] = 0, q->off[1] = 0, q->sz[0] = shape[0], q->sz[1] = shape[1];
        if (job->layout == BY_ROWS) q->off[0] = part_lo(shape[0], r, w), q->sz[0] = part_len(shape[0], r, w);
        if (job->layout == BY_COLS) {
            q->off[1] = part_lo(shape[1], r, w), q->sz[1] = part_len(shape[1], r, w);
            /* column shards land in column-major memory */
            q->strided = 1, q->strides[0] = 1, q->strides[1] = (int64_t)q->sz[0];
        }
        uint64_t nb = numel_of(2, q->sz) * shardpoint_dtype_size(q->t.dtype);
        q->dst = calloc(nb ? nb : 1, 1);
        rank_note(res,
                  shardpoint_load_add_tensor(load, q->t.fqn, q->t.dtype, 2, q->off, q->sz, q->dst,
                                             q->strided ? q->strides : NULL),
                  q->t.fqn);
    }
    int64_t step = 0;
    rank_note(res, shardpoint_load_add_tensor(load, STEP.fqn, STEP.dtype, 0, NULL, NULL, &step, NULL), "m.step");
    unsigned char *blobs[SAVE_WORLD + 1];
    char blob_names[SAVE_WORLD + 1][32];
    for (int k = 0; k <= SAVE_WORLD; ++k) {
        uint64_t len = k < SAVE_WORLD ? private_blob_len(k) : SHARED_BLOB_LEN;
        if (k < SAVE_WORLD) sprintf(blob_names[k], "blob.r%d", k);
        else strcpy(blob_names[k], "blob.shared");
        blobs[k] = calloc(len + 1, 1);
        rank_note(res, shardpoint_load_add_bytes(load, blob_names[k], blobs[k], len), blob_names[k]);
    }
    /* execute even after a failed request: it is collective */
    int rc = rank_note(res, shardpoint_load_execute(load), "execute");
    if (rc == 0) {
        for (int i = 0; i < n; ++i) {
            request *q = &reqs[i];
            res->checked += numel_of(2, q->sz) * shardpoint_dtype_size(q->t.dtype);
            res->mismatches += check_box(&q->t, q->off, q->sz, q->dst, q->strided ? q->strides : NULL);
        }
        res->checked += 8;
        res->mismatches += check_box(&STEP, ZEROS, NULL, &step, NULL);
        for (int k = 0; k <= SAVE_WORLD; ++k) {
            uint64_t len = k < SAVE_WORLD ? private_blob_len(k) : SHARED_BLOB_LEN;
            res->checked += len;
            res->mismatches += gen_check(blobs[k], len, 0, k < SAVE_WORLD ? private_blob_seed(k) : SHARED_BLOB_SEED, 0);
        }
    }
    for (int i = 0; i < n; ++i) free(reqs[i].dst);
    for (int k = 0; k <= SAVE_WORLD; ++k) free(blobs[k]);
    shardpoint_load_free(load);
    shardpoint_reader_free(reader);
}

/* Loads the model with `world` ranks in `layout`; every rank must succeed and match. Returns the
 * bytes compared over all ranks. */
static uint64_t load_model(const char *dir, int world, enum layout layout) {
    load_job job = {dir, layout, 0, 0};
    rank_result res[8];
    assert_int_equal(run_ranks(world, load_rank, &job, res), 0);
    assert_all_ok(res, world);
    uint64_t checked = 0;
    for (int r = 0; r < world; ++r) {
        if (res[r].mismatches) fail_msg("rank %d: %" PRIu64 " bytes differ", r, res[r].mismatches);
        checked += res[r].checked;
    }
    return checked;
}

static void test_four_ranks_save_reshard_load(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);

    /* What landed on disk: every entry complete, replicated data stored once. */
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(r, &info));
    assert_int_equal(info.world_size, SAVE_WORLD);
    assert_int_equal(info.total_stored_bytes, model_unique_bytes());
    assert_true(info.file_count >= 1 && info.file_count <= SAVE_WORLD);
    uint64_t count;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, 4 + 1 + 1 + 2 * SAVE_WORLD);
    struct {
        const char *fqn;
        uint64_t chunks;
    } expect[] = {{"m.rows", 4}, {"m.cols", 4}, {"m.block", 4}, {"m.repl", 1}, {"m.step", 1}, {"blob.shared", 1}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; ++i) {
        uint64_t index;
        shardpoint_entry_info e;
        SP_OK(shardpoint_reader_find(r, expect[i].fqn, &index));
        SP_OK(shardpoint_reader_entry_info(r, index, &e));
        assert_int_equal(e.chunk_count, expect[i].chunks);
        assert_int_equal(e.covered_numel, e.numel);
    }
    for (int k = 0; k < SAVE_WORLD; ++k) {
        char name[32];
        sprintf(name, "private.r%d", k);
        uint64_t index;
        shardpoint_chunk_info ci;
        SP_OK(shardpoint_reader_find(r, name, &index));
        SP_OK(shardpoint_reader_chunk_info(r, index, 0, &ci));
        assert_int_equal(ci.writer_rank, k); /* only its owner had it */
    }
    const char *v;
    SP_OK(shardpoint_reader_metadata_get(r, "world", &v));
    assert_string_equal(v, "4");
    SP_OK(shardpoint_reader_metadata_get(r, "writer", &v));
    assert_string_equal(v, "coordinator"); /* the coordinator's pairs are the ones kept */
    SP_FAILS(shardpoint_reader_metadata_get(r, "only.rank1", &v), SHARDPOINT_ENOTFOUND, "only.rank1");
    /* every data file is listed with its size on disk and its writer */
    for (uint64_t k = 0; k < info.file_count; ++k) {
        shardpoint_file_info fi;
        SP_OK(shardpoint_reader_file_info(r, k, &fi));
        char *path = path_join(dir, fi.name);
        assert_int_equal(file_size(path), (long long)fi.size);
        assert_true(fi.rank >= 0 && fi.rank < SAVE_WORLD);
        char suffix[16];
        sprintf(suffix, "-r%05d.bin", fi.rank);
        assert_non_null(strstr(fi.name, suffix));
        free(path);
    }
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);

    /* The files prove it: 4 copies of m.repl would add 768 KiB, alignment adds < 4 KiB/extent. */
    int files = 0;
    long long on_disk = data_files_total(dir, &files);
    assert_int_equal(files, (int)info.file_count);
    const long long unique = (long long)model_unique_bytes();
    assert_true(on_disk >= unique);
    assert_true(on_disk < unique + 24 * 4096);
    assert_true(on_disk < unique + 3 * (long long)tdesc_nbytes(&REPL));
    assert_int_equal(count_dir_entries(dir), files + 1); /* data files and the metadata only */

    const uint64_t total = tdesc_nbytes(&ROWS) + tdesc_nbytes(&COLS) + tdesc_nbytes(&BLOCK) + tdesc_nbytes(&REPL);
    uint64_t private_total = 0;
    for (int k = 0; k < SAVE_WORLD; ++k) private_total += (uint64_t)(k + 1) * 24;
    /* 3 ranks by rows and 2 ranks by columns each cover the tensors exactly once; every rank
     * loads the scalar and every blob */
    const uint64_t shared = 8 + SHARED_BLOB_LEN + 600;
    assert_int_equal(load_model(dir, 3, BY_ROWS), total + private_total + 3 * shared);
    assert_int_equal(load_model(dir, 2, BY_COLS), total + private_total + 2 * shared);
    assert_int_equal(load_model(dir, 1, WHOLE), total + private_total + shared);
    free(dir);
}

/* More loading ranks than saving ranks: some ranks get empty parts (and still join the load). */
/* The shared open: rank 0 reads the metadata for all; the load that follows is unchanged. When
 * rank 0 finds the metadata damaged, every rank fails with its code, the others saying so. */
static void test_shared_open(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);
    load_job job = {dir, BY_ROWS, 0, 1};
    rank_result res[3];
    assert_int_equal(run_ranks(3, load_rank, &job, res), 0);
    assert_all_ok(res, 3);
    for (int r = 0; r < 3; ++r) assert_int_equal(res[r].mismatches, 0);

    char *meta = path_join(dir, "shardpoint.meta");
    assert_int_equal(flip_byte(meta, 40), 0);
    assert_int_equal(run_ranks(3, load_rank, &job, res), 0);
    for (int r = 0; r < 3; ++r) {
        assert_int_equal(res[r].rc, SHARDPOINT_ECHECKSUM);
        if (r > 0 && !strstr(res[r].message, "rank 0 reading the metadata")) fail_msg("rank %d: %s", r, res[r].message);
    }
    free(meta);
    free(dir);
}

static void test_six_ranks_load_four_rank_checkpoint(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);
    load_model(dir, 6, BY_ROWS);
    free(dir);
}

/* One reader shared by several threads: its query, read and verify functions are safe to call
 * concurrently (each thread reads a different box, one verifies meanwhile). */
typedef struct shared_reader {
    shardpoint_reader *reader;
} shared_reader;

static void read_shared(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    (void)comm;
    shardpoint_reader *reader = ((shared_reader *)arg)->reader;
    for (int round = 0; round < 20; ++round) {
        if (rank == world - 1) {
            rank_note(res, shardpoint_reader_verify(reader), "verify");
            continue;
        }
        uint64_t index;
        shardpoint_entry_info e;
        rank_note(res, shardpoint_reader_find(reader, REPL.fqn, &index), "find");
        rank_note(res, shardpoint_reader_entry_info(reader, index, &e), "entry_info");
        const uint64_t off[2] = {part_lo(REPL.shape[0], rank, world - 1), (uint64_t)round},
                       sz[2] = {part_len(REPL.shape[0], rank, world - 1), REPL.shape[1] - (uint64_t)round};
        double *dst = malloc(sz[0] * sz[1] * sizeof(double));
        if (rank_note(res, shardpoint_reader_read_tensor(reader, REPL.fqn, REPL.dtype, 2, off, sz, dst, NULL), "read") == 0) {
            res->checked += sz[0] * sz[1] * 8;
            res->mismatches += check_box(&REPL, off, sz, dst, NULL);
        }
        free(dst);
    }
}

static void test_reader_shared_by_threads(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);
    shared_reader shared = {NULL};
    SP_OK(shardpoint_reader_open(&shared.reader, dir, NULL));
    rank_result res[4];
    assert_int_equal(run_ranks(4, read_shared, &shared, res), 0); /* no collectives: just threads */
    assert_all_ok(res, 4);
    for (int r = 0; r < 3; ++r) {
        assert_true(res[r].checked > 0);
        assert_int_equal(res[r].mismatches, 0);
    }
    shardpoint_reader_free(shared.reader);
    free(dir);
}

/* --- conflicts -------------------------------------------------------------------------------------- */

typedef struct conflict_case {
    const char *kind;
} conflict_case;

static int offer_conflict(shardpoint_save *s, offers *keep, int r, int w, void *arg) {
    const char *kind = arg;
    int rc = offer_model(s, keep, r, w); /* valid offers besides the conflict */
    if (rc) return rc;
    tdesc x = {"x", SHARDPOINT_DTYPE_F32, 2, {8, 4}, 50};
    uint64_t off[2] = {part_lo(8, r, w), 0}, sz[2] = {part_len(8, r, w), 4};
    if (strcmp(kind, "dtype") == 0 && r == 2) x.dtype = SHARDPOINT_DTYPE_F64;
    if (strcmp(kind, "shape") == 0 && r == 1) x.shape[1] = 5;
    if (strcmp(kind, "overlap") == 0) off[0] = (uint64_t)r, sz[0] = 2; /* rows r..r+1 on every rank */
    if (strcmp(kind, "kind") == 0 && r == 3) return offer_blob(s, keep, "x", 16, 1);
    if (strcmp(kind, "blob_length") == 0) return offer_blob(s, keep, "x", r == 1 ? 16 : 17, 1);
    return offer_box(s, keep, &x, off, sz);
}

static void run_conflict(void **state, const char *kind, const char *needle) {
    char *dir = path_join(*state, "ckpt");
    save_job job = {dir, 0, offer_conflict, (void *)kind, {0}};
    rank_result res[SAVE_WORLD];
    assert_int_equal(run_ranks(SAVE_WORLD, save_rank, &job, res), 0);
    for (int r = 0; r < SAVE_WORLD; ++r) {
        if (res[r].rc != SHARDPOINT_ECONFLICT)
            fail_msg("rank %d: expected SHARDPOINT_ECONFLICT, got %s", r, res[r].rc ? res[r].message : "success");
        if (!strstr(res[r].message, "'x'") || !strstr(res[r].message, needle))
            fail_msg("rank %d: message '%s' should name 'x' and '%s'", r, res[r].message, needle);
    }
    assert_true(count_dir_entries(dir) <= 0); /* not one byte written */
    free(dir);
}

static void test_conflict_dtype(void **state) { run_conflict(state, "dtype", "f64"); }
static void test_conflict_shape(void **state) { run_conflict(state, "shape", "[8,5]"); }
static void test_conflict_partial_overlap(void **state) { run_conflict(state, "overlap", "overlapping"); }
static void test_conflict_tensor_vs_bytes(void **state) { run_conflict(state, "kind", "bytes"); }
static void test_conflict_blob_lengths(void **state) { run_conflict(state, "blob_length", "length"); }

/* --- failing ranks ------------------------------------------------------------------------------------ */

static int offer_with_big_rank2(shardpoint_save *s, offers *keep, int r, int w, void *arg) {
    (void)arg;
    int rc = offer_model(s, keep, r, w);
    if (rc || r != 2) return rc;
    tdesc big = {"rank2.big", SHARDPOINT_DTYPE_U8, 1, {2u << 20}, 60}; /* 2 MiB: rank 2's file only */
    return offer_box(s, keep, &big, ZEROS, big.shape);
}

static void test_rank_fails_while_writing(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0); /* the previous checkpoint */
    snapshot before;
    take_snapshot(dir, &before);

    struct rlimit old_limit, limit;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    limit = old_limit;
    limit.rlim_cur = 1u << 20; /* rank 2 needs > 2 MiB; the others < 300 KiB */
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &limit), 0);
    save_job job = {dir, SHARDPOINT_SAVE_OVERWRITE, offer_with_big_rank2, NULL, {0}};
    rank_result res[SAVE_WORLD];
    int ran = run_ranks(SAVE_WORLD, save_rank, &job, res);
    setrlimit(RLIMIT_FSIZE, &old_limit);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(ran, 0);

    if (res[2].rc != SHARDPOINT_EIO) fail_msg("rank 2: expected SHARDPOINT_EIO, got %s", res[2].message);
    assert_non_null(strstr(res[2].message, "File too large"));
    for (int r = 0; r < SAVE_WORLD; ++r) {
        if (r == 2) continue;
        if (res[r].rc != SHARDPOINT_ERANK) fail_msg("rank %d: expected SHARDPOINT_ERANK, got %s", r, res[r].message);
        if (!strstr(res[r].message, "rank 2") || !strstr(res[r].message, "writing"))
            fail_msg("rank %d: message '%s' should name rank 2 and the step", r, res[r].message);
    }
    assert_unchanged(dir, &before); /* nothing committed, the failed save's files removed */
    load_model(dir, 3, BY_ROWS);   /* and the previous checkpoint is intact */
    load_model(dir, 1, WHOLE);
    free_snapshot(&before);
    free(dir);
}

/* A rank whose checkpoint path is unusable (a regular file where a directory should be) fails
 * while planning; the others learn who failed and nothing is written. */
static void test_rank_fails_while_planning(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);
    snapshot before;
    take_snapshot(dir, &before);
    char *file = path_join(*state, "not-a-dir");
    assert_int_equal(write_file(file, "x", 1), 0);
    char *bad = path_join(file, "ckpt");
    save_job job = {dir, SHARDPOINT_SAVE_OVERWRITE, offer_model_job, NULL, {0}};
    job.dir_of_rank[1] = bad;
    rank_result res[SAVE_WORLD];
    assert_int_equal(run_ranks(SAVE_WORLD, save_rank, &job, res), 0);
    if (res[1].rc != SHARDPOINT_EIO) fail_msg("rank 1: expected SHARDPOINT_EIO, got %s", res[1].message);
    assert_non_null(strstr(res[1].message, "not-a-dir"));
    for (int r = 0; r < SAVE_WORLD; ++r) {
        if (r == 1) continue;
        if (res[r].rc != SHARDPOINT_ERANK) fail_msg("rank %d: expected SHARDPOINT_ERANK, got %s", r, res[r].message);
        if (!strstr(res[r].message, "rank 1") || !strstr(res[r].message, "planning"))
            fail_msg("rank %d: message '%s' should name rank 1 and the step", r, res[r].message);
    }
    assert_unchanged(dir, &before);
    load_model(dir, 1, WHOLE);
    free_snapshot(&before);
    free(bad), free(file), free(dir);
}

/* A rank whose offers are invalid at commit time (it offers nothing valid, the others do)
 * must not hang the others: a rank that fails before commit still joins it. */
static int offer_bad_on_rank3(shardpoint_save *s, offers *keep, int r, int w, void *arg) {
    (void)arg;
    int rc = offer_model(s, keep, r, w);
    if (rc || r != 3) return rc;
    /* a chunk overlapping one this rank already offered is refused at once */
    return offer_box(s, keep, &ROWS, ZEROS, ROWS.shape);
}

static void test_rank_with_refused_offer_still_commits(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_job job = {dir, 0, offer_bad_on_rank3, NULL, {0}};
    rank_result res[SAVE_WORLD];
    assert_int_equal(run_ranks(SAVE_WORLD, save_rank, &job, res), 0);
    /* rank 3's refused offer was its own business: the save of the valid offers went through */
    assert_int_equal(res[3].rc, SHARDPOINT_ECONFLICT);
    for (int r = 0; r < 3; ++r)
        if (res[r].rc != 0) fail_msg("rank %d: %s", r, res[r].message);
    free(dir);
}

/* A load where one rank hits damaged bytes: that rank gets ECHECKSUM, the others ERANK naming it.
 * The damage is in the chunk the savers' rank 3 wrote (rows 7..9 of m.rows): of 3 loading ranks
 * only rank 2 (rows 6..9) reads it. */
static void test_rank_fails_while_loading(void **state) {
    char *dir = path_join(*state, "ckpt");
    save_model(dir, 0);
    const uint64_t row = 8, row_bytes = 6 * 4;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, "m.rows", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    char *victim = NULL;
    for (uint64_t c = 0; c < e.chunk_count && !victim; ++c) {
        shardpoint_chunk_info ci;
        SP_OK(shardpoint_reader_chunk_info(r, index, c, &ci));
        if (ci.offsets[0] <= row && row < ci.offsets[0] + ci.sizes[0]) {
            assert_int_equal(ci.offsets[0], 7);
            victim = path_join(dir, ci.file);
            assert_int_equal(flip_byte(victim, (long long)(ci.file_offset + (row - ci.offsets[0]) * row_bytes)), 0);
        }
    }
    shardpoint_reader_free(r);
    assert_non_null(victim);

    load_job job = {dir, BY_ROWS, 0, 0};
    rank_result res[3];
    assert_int_equal(run_ranks(3, load_rank, &job, res), 0);
    if (res[2].rc != SHARDPOINT_ECHECKSUM) fail_msg("rank 2: expected SHARDPOINT_ECHECKSUM, got %s", res[2].message);
    assert_non_null(strstr(res[2].message, "m.rows"));
    for (int k = 0; k < 2; ++k) {
        if (res[k].rc != SHARDPOINT_ERANK) fail_msg("rank %d: expected SHARDPOINT_ERANK, got %s", k, res[k].message);
        if (!strstr(res[k].message, "rank 2") || !strstr(res[k].message, "checksum"))
            fail_msg("rank %d: '%s' should name rank 2 and its error", k, res[k].message);
    }
    /* unverified, the same load succeeds on every rank and delivers exactly the damaged byte */
    job.flags = SHARDPOINT_LOAD_NO_VERIFY;
    assert_int_equal(run_ranks(3, load_rank, &job, res), 0);
    assert_all_ok(res, 3);
    assert_int_equal(res[0].mismatches + res[1].mismatches, 0);
    assert_int_equal(res[2].mismatches, 1);
    free(victim), free(dir);
}

/* --- the communicator itself ------------------------------------------------------------------------ */

static void comm_rank(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    (void)arg;
    int32_t r = -1, s = -1;
    rank_note(res, shardpoint_comm_rank(comm, &r), "rank");
    rank_note(res, shardpoint_comm_size(comm, &s), "size");
    if (r != rank || s != world) {
        res->rc = -1;
        snprintf(res->message, sizeof res->message, "rank %d of %d reported %d of %d", rank, world, r, s);
    }
}

static void test_callback_communicator_identity(void **state) {
    (void)state;
    rank_result res[5];
    assert_int_equal(run_ranks(5, comm_rank, NULL, res), 0);
    assert_all_ok(res, 5);
}

#define T(name) cmocka_unit_test_setup_teardown(name, dir_setup, dir_teardown)

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        T(test_callback_communicator_identity),
        T(test_four_ranks_save_reshard_load),
        T(test_six_ranks_load_four_rank_checkpoint),
    T(test_shared_open),
        T(test_reader_shared_by_threads),
        T(test_conflict_dtype),
        T(test_conflict_shape),
        T(test_conflict_partial_overlap),
        T(test_conflict_tensor_vs_bytes),
        T(test_conflict_blob_lengths),
        T(test_rank_fails_while_writing),
        T(test_rank_fails_while_planning),
        T(test_rank_with_refused_offer_still_commits),
        T(test_rank_fails_while_loading),
    };
    return cmocka_run_group_tests_name("c_multirank", tests, NULL, NULL);
}
