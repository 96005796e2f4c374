/* Progress reports and cancellation: save, load, verify and the phase API report their bytes
 * on the calling thread, end at done == total, and a callback that asks to stop cancels the
 * operation with SHARDPOINT_ECANCELED, committing nothing and losing nothing. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "helpers.h"

#define MIB (1ull << 20)

/* What a callback saw. `cancel_at`: return nonzero on that call (1-based; 0: never).
 * `sleep_ms`: time spent in every call, so that the next poll is due at once. */
typedef struct recorder {
    int calls;
    int32_t phase;
    uint64_t first_done, last_done, last_total;
    int went_back;     /* done decreased, or total changed */
    int other_thread;  /* called on a thread other than the one that started the operation */
    pthread_t caller;
    int cancel_at;
    int sleep_ms;
} recorder;

static void recorder_init(recorder *r, int cancel_at, int sleep_ms) {
    memset(r, 0, sizeof *r);
    r->caller = pthread_self();
    r->cancel_at = cancel_at;
    r->sleep_ms = sleep_ms;
}

static int record_progress(void *user, int32_t phase, uint64_t done, uint64_t total) {
    recorder *r = user;
    if (!pthread_equal(r->caller, pthread_self())) r->other_thread = 1;
    if (r->calls == 0) {
        r->phase = phase;
        r->first_done = done;
    } else if (phase != r->phase || done < r->last_done || total != r->last_total) {
        r->went_back = 1;
    }
    r->last_done = done;
    r->last_total = total;
    ++r->calls;
    if (r->sleep_ms) {
        struct timespec t = {0, (long)r->sleep_ms * 1000000L};
        nanosleep(&t, NULL);
    }
    return r->cancel_at && r->calls >= r->cancel_at;
}

/* A model of `count` f32 tensors of `mib` MiB each, plus small ones that are packed. */
#define BIG 8
#define SMALL 4
static tdesc model[BIG + SMALL];
static uint64_t model_bytes;

static void make_model(uint64_t mib) {
    static char names[BIG + SMALL][16];
    model_bytes = 0;
    for (int i = 0; i < BIG + SMALL; ++i) {
        snprintf(names[i], sizeof names[i], i < BIG ? "big.%d" : "small.%d", i);
        tdesc t = {names[i], SHARDPOINT_DTYPE_F32, 2, {i < BIG ? mib * 1024 : 3, 256}, (uint32_t)(11 + i)};
        model[i] = t;
        model_bytes += tdesc_nbytes(&t);
    }
}

/* Starts a save of the model into `dir` (every buffer is kept in `bufs` until freed). */
static shardpoint_save *start_save(const char *dir, const shardpoint_save_options *options, void **bufs) {
    static const uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    shardpoint_save *save = NULL;
    SP_OK(shardpoint_save_new(&save, dir, NULL, options));
    for (int i = 0; i < BIG + SMALL; ++i) {
        bufs[i] = make_box(&model[i], zeros, model[i].shape);
        SP_OK(shardpoint_save_add_tensor(save, model[i].fqn, model[i].dtype, model[i].ndim, model[i].shape, zeros,
                                         model[i].shape, bufs[i], NULL));
    }
    return save;
}

static void free_bufs(void **bufs) {
    for (int i = 0; i < BIG + SMALL; ++i) free(bufs[i]);
}

static void assert_model_loads(const char *dir) {
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, dir, NULL));
    for (int i = 0; i < BIG + SMALL; ++i) {
        int rc = 0;
        uint64_t bad = load_whole_mismatches(reader, &model[i], &rc);
        SP_OK(rc);
        assert_int_equal(bad, 0);
    }
    shardpoint_reader_free(reader);
}

/* The reports of a whole save: first 0, last done == total == every byte, never backwards, all
 * on the calling thread. */
static void check_save_reports(const char *dir, uint32_t codec, uint32_t io_threads) {
    void *bufs[BIG + SMALL];
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    o.codec = codec;
    o.io_threads = io_threads;
    shardpoint_save *save = start_save(dir, &o, bufs);
    recorder r;
    recorder_init(&r, 0, 0);
    SP_OK(shardpoint_save_set_progress(save, record_progress, &r));
    SP_OK(shardpoint_save_commit(save));
    shardpoint_save_free(save);
    free_bufs(bufs);
    assert_true(r.calls >= 2);
    assert_int_equal(r.phase, SHARDPOINT_PROGRESS_WRITE);
    assert_int_equal(r.first_done, 0);
    assert_int_equal(r.last_total, model_bytes);
    assert_int_equal(r.last_done, model_bytes);
    assert_false(r.went_back);
    assert_false(r.other_thread);
    assert_model_loads(dir);
}

static void test_save_reports_every_byte(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    check_save_reports(dir, SHARDPOINT_CODEC_DEFAULT, 2);
    check_save_reports(dir, SHARDPOINT_CODEC_DEFAULT, 1);
    check_save_reports(dir, SHARDPOINT_CODEC_ZSTD, 2);
    check_save_reports(dir, SHARDPOINT_CODEC_DEFLATE_STREAM, 2);
    free(dir);
}

/* Saves the model, then a second save into the same directory is canceled at call `cancel_at`:
 * the commit fails with ECANCELED, the directory is exactly as before, the model still loads. */
static void check_canceled_save(const char *dir, int cancel_at, uint32_t codec) {
    snapshot before;
    take_snapshot(dir, &before);
    void *bufs[BIG + SMALL];
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    o.codec = codec;
    o.io_threads = 1; /* every piece on the calling thread: a poll after each */
    shardpoint_save *save = start_save(dir, &o, bufs);
    recorder r;
    recorder_init(&r, cancel_at, 60);
    SP_OK(shardpoint_save_set_progress(save, record_progress, &r));
    SP_FAILS(shardpoint_save_commit(save), SHARDPOINT_ECANCELED, "canceled");
    assert_int_equal(r.calls, cancel_at);
    assert_true(r.last_done < model_bytes);
    if (cancel_at > 1 && r.last_done == 0) fail_msg("codec %u: canceled at call %d with nothing done", codec, cancel_at);
    shardpoint_save_free(save);
    free_bufs(bufs);
    assert_unchanged(dir, &before);
    free_snapshot(&before);
    assert_model_loads(dir);
}

static void test_canceled_save_keeps_previous_checkpoint(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    check_save_reports(dir, SHARDPOINT_CODEC_DEFAULT, 2); /* the previous checkpoint */
    check_canceled_save(dir, 1, SHARDPOINT_CODEC_DEFAULT);
    check_canceled_save(dir, 3, SHARDPOINT_CODEC_DEFAULT);
    check_canceled_save(dir, 3, SHARDPOINT_CODEC_ZSTD);
    check_canceled_save(dir, 2, SHARDPOINT_CODEC_DEFLATE_STREAM);
    free(dir);
}

/* A canceled first save into a new directory leaves no checkpoint and no files. */
static void test_canceled_first_save_leaves_nothing(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    void *bufs[BIG + SMALL];
    shardpoint_save *save = start_save(dir, NULL, bufs);
    recorder r;
    recorder_init(&r, 2, 60);
    SP_OK(shardpoint_save_set_progress(save, record_progress, &r));
    SP_FAILS(shardpoint_save_commit(save), SHARDPOINT_ECANCELED, "progress");
    shardpoint_save_free(save);
    free_bufs(bufs);
    int n = 0;
    assert_int_equal(data_files_total(dir, &n), 0);
    assert_int_equal(n, 0);
    char *meta = path_join(dir, "shardpoint.meta");
    assert_false(file_exists(meta));
    shardpoint_reader *reader = NULL;
    SP_FAILS(shardpoint_reader_open(&reader, dir, NULL), SHARDPOINT_ENOTFOUND, NULL);
    /* and a save without a callback then succeeds */
    save = start_save(dir, NULL, bufs);
    SP_OK(shardpoint_save_commit(save));
    shardpoint_save_free(save);
    free_bufs(bufs);
    assert_model_loads(dir);
    free(meta), free(dir);
}

/* Loads the whole model through one load handle with `r` reporting. Returns the execute's code. */
static int load_model_reporting(const char *dir, recorder *r, uint32_t io_threads, uint64_t *mismatches) {
    static const uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.io_threads = io_threads;
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, dir, &lo));
    shardpoint_load *load = NULL;
    SP_OK(shardpoint_load_new(&load, reader, NULL));
    void *dst[BIG + SMALL];
    for (int i = 0; i < BIG + SMALL; ++i) {
        dst[i] = calloc(1, tdesc_nbytes(&model[i]));
        SP_OK(shardpoint_load_add_tensor(load, model[i].fqn, model[i].dtype, model[i].ndim, zeros, model[i].shape,
                                         dst[i], NULL));
    }
    SP_OK(shardpoint_load_set_progress(load, record_progress, r));
    int rc = shardpoint_load_execute(load);
    *mismatches = 0;
    for (int i = 0; i < BIG + SMALL; ++i) {
        *mismatches += check_box(&model[i], zeros, model[i].shape, dst[i], NULL);
        free(dst[i]);
    }
    if (rc == 0) SP_FAILS(shardpoint_load_set_progress(load, NULL, NULL), SHARDPOINT_ESTATE, "executed");
    shardpoint_load_free(load);
    shardpoint_reader_free(reader);
    return rc;
}

static void test_load_reports_and_cancels(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    for (int compressed = 0; compressed < 2; ++compressed) {
        check_save_reports(dir, compressed ? SHARDPOINT_CODEC_ZSTD : SHARDPOINT_CODEC_DEFAULT, 2);
        recorder r;
        recorder_init(&r, 0, 0);
        uint64_t bad = 1;
        SP_OK(load_model_reporting(dir, &r, 2, &bad));
        assert_int_equal(bad, 0);
        assert_int_equal(r.phase, SHARDPOINT_PROGRESS_READ);
        assert_int_equal(r.first_done, 0);
        /* whole tensors: every byte read once (small ones with their CRC blocks' neighbours) */
        assert_true(r.last_total >= model_bytes);
        assert_true(r.last_total <= model_bytes + (BIG + SMALL) * 65536ull);
        assert_int_equal(r.last_done, r.last_total);
        assert_false(r.went_back);
        assert_false(r.other_thread);

        recorder_init(&r, 2, 60);
        assert_int_equal(load_model_reporting(dir, &r, 1, &bad), SHARDPOINT_ECANCELED);
        assert_non_null(strstr(shardpoint_last_error(), "canceled"));
        assert_int_equal(r.calls, 2);
        assert_true(r.last_done > 0 && r.last_done < r.last_total);
        assert_true(bad > 0); /* it stopped: some destinations were never filled */
    }
    free(dir);
}

static void test_verify_reports_and_cancels(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    check_save_reports(dir, SHARDPOINT_CODEC_DEFAULT, 2);
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.io_threads = 1;
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, dir, &lo));
    recorder r;
    recorder_init(&r, 0, 0);
    SP_OK(shardpoint_reader_set_progress(reader, record_progress, &r));
    SP_OK(shardpoint_reader_verify(reader));
    assert_int_equal(r.phase, SHARDPOINT_PROGRESS_VERIFY);
    assert_int_equal(r.last_total, model_bytes); /* raw extents: stored bytes are the data */
    assert_int_equal(r.last_done, model_bytes);
    assert_false(r.went_back);

    recorder_init(&r, 2, 60);
    uint64_t problems = 99;
    SP_FAILS(shardpoint_reader_verify_each(reader, NULL, NULL, &problems), SHARDPOINT_ECANCELED, "canceled");
    assert_int_equal(r.calls, 2);
    /* NULL turns reporting off */
    SP_OK(shardpoint_reader_set_progress(reader, NULL, NULL));
    recorder_init(&r, 1, 0);
    SP_OK(shardpoint_reader_verify(reader));
    assert_int_equal(r.calls, 0);
    shardpoint_reader_free(reader);

    /* a corrupted checkpoint still reports its problem, not a cancellation */
    char *name = NULL;
    {
        char **names = NULL;
        size_t count = 0;
        list_files(dir, &names, &count);
        for (size_t i = 0; i < count && !name; ++i)
            if (strncmp(names[i], "data-", 5) == 0) name = path_join(dir, names[i]);
        free_names(names, count);
    }
    assert_non_null(name);
    assert_int_equal(flip_byte(name, 100), 0);
    SP_OK(shardpoint_reader_open(&reader, dir, &lo));
    recorder_init(&r, 0, 0);
    SP_OK(shardpoint_reader_set_progress(reader, record_progress, &r));
    SP_FAILS(shardpoint_reader_verify(reader), SHARDPOINT_ECHECKSUM, NULL);
    assert_int_equal(r.last_done, r.last_total); /* every byte was still checked */
    shardpoint_reader_free(reader);
    free(name), free(dir);
}

static void test_progress_arguments_and_states(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    SP_FAILS(shardpoint_save_set_progress(NULL, record_progress, NULL), SHARDPOINT_EINVAL, "save");
    SP_FAILS(shardpoint_load_set_progress(NULL, record_progress, NULL), SHARDPOINT_EINVAL, "load");
    SP_FAILS(shardpoint_reader_set_progress(NULL, record_progress, NULL), SHARDPOINT_EINVAL, "reader");
    SP_FAILS(shardpoint_writer_set_progress(NULL, record_progress, NULL), SHARDPOINT_EINVAL, "writer");
    assert_string_equal(shardpoint_error_name(SHARDPOINT_ECANCELED), "SHARDPOINT_ECANCELED");

    void *bufs[BIG + SMALL];
    shardpoint_save *save = start_save(dir, NULL, bufs);
    recorder r;
    recorder_init(&r, 1, 0);
    SP_OK(shardpoint_save_set_progress(save, record_progress, &r));
    SP_OK(shardpoint_save_set_progress(save, NULL, NULL)); /* turned off again: the commit runs */
    SP_OK(shardpoint_save_commit(save));
    assert_int_equal(r.calls, 0);
    SP_FAILS(shardpoint_save_set_progress(save, record_progress, &r), SHARDPOINT_ESTATE, "committed");
    shardpoint_save_free(save);
    free_bufs(bufs);
    free(dir);
}

/* The phase API: one total over write_bound and write; set_progress after a write started is
 * refused. */
static void test_writer_reports_across_batches(void **state) {
    static const uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    shardpoint_writer *w = NULL;
    SP_OK(shardpoint_writer_new(&w, dir, NULL));
    SP_OK(shardpoint_writer_set_up(w, 0, 1));
    for (int i = 0; i < BIG + SMALL; ++i)
        SP_OK(shardpoint_writer_plan_tensor(w, model[i].fqn, model[i].dtype, model[i].ndim, model[i].shape, zeros,
                                            model[i].shape));
    const void *plan = NULL;
    uint64_t plan_len = 0;
    SP_OK(shardpoint_writer_local_plan(w, &plan, &plan_len));
    const void *plans[1] = {plan};
    uint64_t lens[1] = {plan_len};
    SP_OK(shardpoint_writer_global_plan(w, 1, plans, lens));
    const void *final_plan = NULL;
    uint64_t final_len = 0;
    SP_OK(shardpoint_writer_final_plan(w, 0, &final_plan, &final_len));
    const uint32_t *assigned = NULL;
    uint64_t n_assigned = 0;
    SP_OK(shardpoint_writer_assigned(w, final_plan, final_len, &assigned, &n_assigned));
    assert_int_equal(n_assigned, BIG + SMALL);
    recorder r;
    recorder_init(&r, 0, 0);
    SP_OK(shardpoint_writer_set_progress(w, record_progress, &r));
    void *buf = NULL;
    for (uint64_t k = 0; k < n_assigned; ++k) { /* one item at a time, each buffer freed after its write */
        buf = make_box(&model[assigned[k]], zeros, model[assigned[k]].shape);
        SP_OK(shardpoint_writer_bind_tensor(w, assigned[k], buf, NULL));
        if (k + 1 < n_assigned) {
            SP_OK(shardpoint_writer_write_bound(w, final_plan, final_len));
            free(buf);
        }
        if (k == 0) SP_FAILS(shardpoint_writer_set_progress(w, NULL, NULL), SHARDPOINT_ESTATE, "before the first write");
    }
    const void *results = NULL;
    uint64_t results_len = 0;
    SP_OK(shardpoint_writer_write(w, final_plan, final_len, &results, &results_len));
    free(buf);
    assert_int_equal(r.first_done, 0);
    assert_int_equal(r.last_total, model_bytes);
    assert_int_equal(r.last_done, model_bytes);
    assert_false(r.went_back);
    const void *all[1] = {results};
    uint64_t all_lens[1] = {results_len};
    SP_OK(shardpoint_writer_finish(w, 1, all, all_lens));
    shardpoint_writer_free(w);
    assert_model_loads(dir);
    free(dir);
}

/* Four ranks as threads; rank 2 cancels its write. It gets ECANCELED, the others ERANK naming
 * it, and the previous checkpoint is untouched. */
#define WORLD 4
typedef struct cancel_job {
    const char *dir;
    int cancel_rank;
} cancel_job;

static void cancel_rank_fn(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    const cancel_job *job = arg;
    const tdesc *t = &model[0];
    uint64_t offsets[2] = {part_lo(t->shape[0], rank, world), 0};
    uint64_t sizes[2] = {part_len(t->shape[0], rank, world), t->shape[1]};
    void *buf = make_box(t, offsets, sizes);
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    o.io_threads = 1;
    shardpoint_save *save = NULL;
    recorder r;
    recorder_init(&r, rank == job->cancel_rank ? 1 : 0, 0);
    if (!rank_note(res, shardpoint_save_new(&save, job->dir, comm, &o), "new") &&
        !rank_note(res, shardpoint_save_add_tensor(save, t->fqn, t->dtype, 2, t->shape, offsets, sizes, buf, NULL), "add") &&
        !rank_note(res, shardpoint_save_set_progress(save, record_progress, &r), "set_progress"))
        rank_note(res, shardpoint_save_commit(save), "commit");
    shardpoint_save_free(save);
    free(buf);
}

static void test_rank_cancels_save(void **state) {
    make_model(1);
    char *dir = path_join(*state, "ckpt");
    check_save_reports(dir, SHARDPOINT_CODEC_DEFAULT, 2);
    snapshot before;
    take_snapshot(dir, &before);
    cancel_job job = {dir, 2};
    rank_result res[WORLD];
    assert_int_equal(run_ranks(WORLD, cancel_rank_fn, &job, res), 0);
    if (res[2].rc != SHARDPOINT_ECANCELED) fail_msg("rank 2: expected SHARDPOINT_ECANCELED, got %s", res[2].message);
    for (int rank = 0; rank < WORLD; ++rank) {
        if (rank == 2) continue;
        if (res[rank].rc != SHARDPOINT_ERANK) fail_msg("rank %d: expected SHARDPOINT_ERANK, got %s", rank, res[rank].message);
        if (!strstr(res[rank].message, "rank 2") || !strstr(res[rank].message, "canceled"))
            fail_msg("rank %d: message '%s' should name rank 2 and the cancellation", rank, res[rank].message);
    }
    assert_unchanged(dir, &before);
    free_snapshot(&before);
    assert_model_loads(dir);
    free(dir);
}

#define T(name) cmocka_unit_test_setup_teardown(name, dir_setup, dir_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_save_reports_every_byte),
        T(test_canceled_save_keeps_previous_checkpoint),
        T(test_canceled_first_save_leaves_nothing),
        T(test_load_reports_and_cancels),
        T(test_verify_reports_and_cancels),
        T(test_progress_arguments_and_states),
        T(test_writer_reports_across_batches),
        T(test_rank_cancels_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
