/* Asynchronous saves: commit_async returns once the data is staged, the caller's memory may change
 * at once, the outcome (collective) comes from wait, a canceled or failed save loses nothing, and
 * a staging area serves one save at a time. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* Two tensors: a whole f32 matrix and the strided column 1 of a [rows, 4] i64 buffer. */
#define ROWS 4096
typedef struct model {
    float *w;
    int64_t *grid;
    tdesc tw, tcol;
} model;

static void model_init(model *m, uint32_t seed) {
    tdesc tw = {"w", SHARDPOINT_DTYPE_F32, 2, {ROWS, 256}, seed};
    tdesc tcol = {"col", SHARDPOINT_DTYPE_I64, 1, {ROWS}, seed + 1};
    m->tw = tw;
    m->tcol = tcol;
    m->w = make_box(&m->tw, ZEROS, m->tw.shape);
    m->grid = calloc(ROWS * 4, sizeof(int64_t));
    int64_t strides[1] = {4};
    fill_box(&m->tcol, ZEROS, m->tcol.shape, m->grid + 1, strides);
}

static void model_scribble(model *m) { /* what training does to the memory once the save returned */
    memset(m->w, 0x5a, tdesc_nbytes(&m->tw));
    memset(m->grid, 0x33, ROWS * 4 * sizeof(int64_t));
}

static void model_free(model *m) {
    free(m->w);
    free(m->grid);
}

static shardpoint_save *start_save(const char *dir, const model *m, uint32_t flags) {
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = flags;
    shardpoint_save *save = NULL;
    SP_OK(shardpoint_save_new(&save, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(save, "w", m->tw.dtype, 2, m->tw.shape, ZEROS, m->tw.shape, m->w, NULL));
    int64_t strides[1] = {4};
    SP_OK(shardpoint_save_add_tensor(save, "col", m->tcol.dtype, 1, m->tcol.shape, ZEROS, m->tcol.shape, m->grid + 1,
                                     strides));
    SP_OK(shardpoint_save_add_bytes(save, "blob", "optimizer", 9));
    return save;
}

static void assert_holds(const char *dir, uint32_t seed) {
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    tdesc tw = {"w", SHARDPOINT_DTYPE_F32, 2, {ROWS, 256}, seed};
    tdesc tcol = {"col", SHARDPOINT_DTYPE_I64, 1, {ROWS}, seed + 1};
    int rc = 0;
    assert_int_equal(load_whole_mismatches(r, &tw, &rc), 0);
    assert_int_equal(load_whole_mismatches(r, &tcol, &rc), 0);
    char blob[16] = {0};
    uint64_t len = 0;
    SP_OK(shardpoint_reader_read_bytes(r, "blob", blob, sizeof blob, &len));
    assert_int_equal(len, 9);
    assert_memory_equal(blob, "optimizer", 9);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
}

static void test_async_save_round_trip(void **state) {
    char *dir = path_join(*state, "ckpt");
    model m;
    model_init(&m, 5);
    shardpoint_save *save = start_save(dir, &m, 0);
    uint64_t need = 0;
    SP_OK(shardpoint_save_staging_size(save, &need));
    assert_true(need >= tdesc_nbytes(&m.tw) + tdesc_nbytes(&m.tcol) + 9);
    assert_true(need <= tdesc_nbytes(&m.tw) + tdesc_nbytes(&m.tcol) + 9 + 3 * 64);
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, need));
    uint64_t cap = 0;
    SP_OK(shardpoint_staging_capacity(staging, &cap));
    assert_int_equal(cap, need);
    SP_OK(shardpoint_save_commit_async(save, staging));
    model_scribble(&m); /* the save must not see this */
    SP_FAILS(shardpoint_save_commit(save), SHARDPOINT_ESTATE, "committed");
    SP_OK(shardpoint_save_wait(save));
    SP_OK(shardpoint_save_wait(save)); /* the same outcome again */
    int32_t finished = 0;
    SP_OK(shardpoint_save_poll(save, &finished));
    assert_int_equal(finished, 1);
    assert_holds(dir, 5);
    shardpoint_save_free(save);
    shardpoint_staging_free(staging);
    model_free(&m);
    free(dir);
}

static void test_staging_too_small_starts_nothing(void **state) {
    char *dir = path_join(*state, "ckpt");
    model m;
    model_init(&m, 7);
    shardpoint_save *save = start_save(dir, &m, 0);
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, 1 << 20));
    SP_FAILS(shardpoint_save_commit_async(save, staging), SHARDPOINT_ERANGE, "staging");
    SP_FAILS(shardpoint_save_wait(save), SHARDPOINT_ESTATE, "asynchronous");
    int32_t finished = 0;
    SP_FAILS(shardpoint_save_poll(save, &finished), SHARDPOINT_ESTATE, NULL);
    SP_FAILS(shardpoint_save_cancel(save), SHARDPOINT_ESTATE, NULL);
    SP_OK(shardpoint_save_commit(save)); /* still committable the ordinary way */
    assert_holds(dir, 7);
    shardpoint_save_free(save);
    shardpoint_staging_free(staging);
    model_free(&m);
    SP_FAILS(shardpoint_save_commit_async(NULL, NULL), SHARDPOINT_EINVAL, "save");
    SP_FAILS(shardpoint_staging_new(NULL, 1), SHARDPOINT_EINVAL, "out");
    free(dir);
}

/* Errors come from wait: a second save into a checkpoint without OVERWRITE. */
static void test_errors_surface_on_wait(void **state) {
    char *dir = path_join(*state, "ckpt");
    model m;
    model_init(&m, 9);
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, 8 << 20));
    shardpoint_save *first = start_save(dir, &m, 0);
    SP_OK(shardpoint_save_commit_async(first, staging));
    SP_OK(shardpoint_save_wait(first));
    shardpoint_save *second = start_save(dir, &m, 0);
    SP_OK(shardpoint_save_commit_async(second, staging));
    SP_FAILS(shardpoint_save_wait(second), SHARDPOINT_EEXISTS, "overwrite");
    SP_FAILS(shardpoint_save_wait(second), SHARDPOINT_EEXISTS, "overwrite");
    assert_holds(dir, 9);
    shardpoint_save_free(first);
    shardpoint_save_free(second);
    shardpoint_staging_free(staging);
    model_free(&m);
    free(dir);
}

/* One staging area, saves back to back: a commit_async waits for the save still using the area;
 * freeing a save or the area waits for its commit; each checkpoint holds its own step. */
static void test_staging_is_reused_one_save_at_a_time(void **state) {
    model m[3];
    char *dirs[3];
    shardpoint_save *saves[3];
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, 8 << 20));
    for (int i = 0; i < 3; ++i) {
        char name[16];
        snprintf(name, sizeof name, "step-%d", i);
        dirs[i] = path_join(*state, name);
        model_init(&m[i], 20u + (uint32_t)i);
        saves[i] = start_save(dirs[i], &m[i], 0);
        SP_OK(shardpoint_save_commit_async(saves[i], staging));
        if (i > 0) { /* the area was free again: the previous save had ended */
            int32_t finished = 0;
            SP_OK(shardpoint_save_poll(saves[i - 1], &finished));
            assert_int_equal(finished, 1);
        }
        model_scribble(&m[i]);
    }
    shardpoint_save_free(saves[0]); /* without wait: freeing waits, the checkpoint is there */
    SP_OK(shardpoint_save_wait(saves[1]));
    shardpoint_save_free(saves[1]);
    shardpoint_staging_free(staging); /* waits for saves[2] */
    SP_OK(shardpoint_save_wait(saves[2]));
    shardpoint_save_free(saves[2]);
    for (int i = 0; i < 3; ++i) {
        assert_holds(dirs[i], 20u + (uint32_t)i);
        model_free(&m[i]);
        free(dirs[i]);
    }
}

/* One staging area, commit_async from three threads at once (the header allows it): the saves
 * take turns, every one commits its own data. */
typedef struct shared_job {
    shardpoint_staging *staging;
    char *dir;
    uint32_t seed;
    int rc_async, rc_wait;
} shared_job;

static void *commit_on_shared_staging(void *arg) {
    shared_job *job = arg;
    model m;
    model_init(&m, job->seed);
    shardpoint_save *save = start_save(job->dir, &m, 0);
    job->rc_async = shardpoint_save_commit_async(save, job->staging);
    model_scribble(&m);
    job->rc_wait = job->rc_async ? job->rc_async : shardpoint_save_wait(save);
    shardpoint_save_free(save);
    model_free(&m);
    return NULL;
}

static void test_staging_shared_by_threads(void **state) {
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, 8 << 20));
    shared_job jobs[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; ++i) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        jobs[i] = (shared_job){staging, path_join(*state, name), 40u + (uint32_t)i, -1, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, commit_on_shared_staging, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; ++i) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].rc_async, 0);
        assert_int_equal(jobs[i].rc_wait, 0);
        assert_holds(jobs[i].dir, jobs[i].seed);
        free(jobs[i].dir);
    }
    shardpoint_staging_free(staging);
}

/* A progress callback that sleeps keeps the write going long enough to cancel it midway. */
static int slow_progress(void *user, int32_t phase, uint64_t done, uint64_t total) {
    (void)phase, (void)done, (void)total;
    ++*(int *)user;
    struct timespec t = {0, 30 * 1000000L};
    nanosleep(&t, NULL);
    return 0;
}

static void test_cancel_keeps_the_previous_checkpoint(void **state) {
    char *dir = path_join(*state, "ckpt");
    model m;
    model_init(&m, 30);
    SP_OK(save_whole(dir, &m.tw, 1, NULL)); /* the previous checkpoint: just w of seed 30 */
    snapshot before;
    take_snapshot(dir, &before);
    model next;
    model_init(&next, 31);
    shardpoint_save *save = start_save(dir, &next, SHARDPOINT_SAVE_OVERWRITE);
    int calls = 0;
    SP_OK(shardpoint_save_set_progress(save, slow_progress, &calls));
    shardpoint_staging *staging = NULL;
    SP_OK(shardpoint_staging_new(&staging, 8 << 20));
    SP_OK(shardpoint_save_commit_async(save, staging));
    SP_OK(shardpoint_save_cancel(save));
    SP_FAILS(shardpoint_save_wait(save), SHARDPOINT_ECANCELED, "shardpoint_save_cancel");
    assert_unchanged(dir, &before);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &m.tw, NULL), 0);
    shardpoint_reader_free(r);
    free_snapshot(&before);
    shardpoint_save_free(save);
    shardpoint_staging_free(staging);
    model_free(&m);
    model_free(&next);
    free(dir);
}

/* Three thread-ranks save rows asynchronously (the communicator is used from the background
 * threads); every rank's wait returns the outcome; a rank that fails makes every rank fail. */
#define WORLD 3
typedef struct async_job {
    const char *dir;
    int bad_rank; /* offers a chunk of another dtype: a conflict every rank learns */
} async_job;

static void async_rank(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    const async_job *job = arg;
    tdesc t = {"rows", SHARDPOINT_DTYPE_F32, 2, {96, 512}, 77};
    uint64_t offsets[2] = {part_lo(t.shape[0], rank, world), 0};
    uint64_t sizes[2] = {part_len(t.shape[0], rank, world), t.shape[1]};
    void *buf = make_box(&t, offsets, sizes);
    shardpoint_save *save = NULL;
    shardpoint_staging *staging = NULL;
    const int32_t dtype = rank == job->bad_rank ? SHARDPOINT_DTYPE_I32 : t.dtype;
    if (!rank_note(res, shardpoint_save_new(&save, job->dir, comm, NULL), "new") &&
        !rank_note(res, shardpoint_save_add_tensor(save, t.fqn, dtype, 2, t.shape, offsets, sizes, buf, NULL), "add") &&
        !rank_note(res, shardpoint_staging_new(&staging, 1 << 20), "staging") &&
        !rank_note(res, shardpoint_save_commit_async(save, staging), "commit_async")) {
        memset(buf, 0, sizes[0] * sizes[1] * 4);
        rank_note(res, shardpoint_save_wait(save), "wait");
    }
    shardpoint_save_free(save);
    shardpoint_staging_free(staging);
    free(buf);
    if (res->rc == 0) {
        shardpoint_reader *r = NULL;
        if (!rank_note(res, shardpoint_reader_open(&r, job->dir, NULL), "open")) {
            res->mismatches = load_whole_mismatches(r, &t, NULL);
            shardpoint_reader_free(r);
        }
    }
}

static void test_async_save_over_ranks(void **state) {
    char *dir = path_join(*state, "ckpt");
    async_job ok = {dir, -1};
    rank_result res[WORLD];
    assert_int_equal(run_ranks(WORLD, async_rank, &ok, res), 0);
    for (int r = 0; r < WORLD; ++r) {
        if (res[r].rc) fail_msg("rank %d: %s", r, res[r].message);
        assert_int_equal(res[r].mismatches, 0);
    }
    char *dir2 = path_join(*state, "conflict");
    async_job bad = {dir2, 1};
    assert_int_equal(run_ranks(WORLD, async_rank, &bad, res), 0);
    for (int r = 0; r < WORLD; ++r)
        if (res[r].rc != SHARDPOINT_ECONFLICT) fail_msg("rank %d: expected SHARDPOINT_ECONFLICT, got %s", r, res[r].message);
    shardpoint_reader *reader = NULL;
    SP_FAILS(shardpoint_reader_open(&reader, dir2, NULL), SHARDPOINT_ENOTFOUND, NULL);
    free(dir), free(dir2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, dir_setup, dir_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_async_save_round_trip),
        T(test_staging_too_small_starts_nothing),
        T(test_errors_surface_on_wait),
        T(test_staging_is_reused_one_save_at_a_time),
        T(test_staging_shared_by_threads),
        T(test_cancel_keeps_the_previous_checkpoint),
        T(test_async_save_over_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
