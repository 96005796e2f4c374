/* The commit protocol (FORMAT.md section 5) seen from outside: concurrent saves into one directory
 * (real processes and threads), debris of killed saves and its collection, metadata a power cut can
 * leave behind, save-time coverage, a real full disk, and the durability flags. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* A checkpoint whose values are a function of `seed`: two tensors and a blob. */
static tdesc model_w(uint32_t seed) { return (tdesc){"w", SHARDPOINT_DTYPE_F32, 2, {64, 48}, seed}; }
static tdesc model_b(uint32_t seed) { return (tdesc){"b", SHARDPOINT_DTYPE_BF16, 1, {333}, seed + 1}; }

static int save_model(const char *dir, uint32_t seed, uint32_t flags) {
    tdesc ts[2] = {model_w(seed), model_b(seed)};
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = flags;
    return save_whole(dir, ts, 2, &o);
}

/* The seed of the checkpoint at `dir` (checked byte for byte), or -1. */
static int model_seed(const char *dir) {
    shardpoint_reader *r = NULL;
    if (shardpoint_reader_open(&r, dir, NULL) != 0) return -1;
    int found = -1;
    for (uint32_t seed = 1; seed <= 64 && found < 0; ++seed) {
        tdesc w = model_w(seed), b = model_b(seed);
        if (load_whole_mismatches(r, &w, NULL) == 0 && load_whole_mismatches(r, &b, NULL) == 0) found = (int)seed;
    }
    shardpoint_reader_free(r);
    return found;
}

/* Files of `dir` other than the metadata and the data files its checkpoint names. */
static int unreferenced_files(const char *dir) {
    uint64_t files = 0;
    if (shardpoint_gc(dir, SHARDPOINT_GC_DRY_RUN, NULL, NULL, &files, NULL) != 0) return -1;
    return (int)files;
}

/* --- concurrent saves ------------------------------------------------------------------------ */

/* Several processes save into the same new directory without overwrite: exactly one wins, the
 * others get SHARDPOINT_EEXISTS and leave nothing behind. */
static void test_concurrent_processes_one_winner(void **state) {
    const char *tmp = *state;
    enum { trials = 12, writers = 4 };
    for (int trial = 0; trial < trials; ++trial) {
        char name[32];
        snprintf(name, sizeof name, "race-%d", trial);
        char *dir = path_join(tmp, name);
        pid_t pids[writers];
        for (int w = 0; w < writers; ++w) {
            pids[w] = fork();
            assert_true(pids[w] >= 0);
            if (pids[w] == 0) {
                int rc = save_model(dir, (uint32_t)(w + 1), 0);
                _exit(rc == 0 ? 0 : rc == SHARDPOINT_EEXISTS ? 10 : 20);
            }
        }
        int winners = 0, refused = 0, winner = -1;
        for (int w = 0; w < writers; ++w) {
            int status = 0;
            assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
            assert_true(WIFEXITED(status));
            if (WEXITSTATUS(status) == 0) ++winners, winner = w + 1;
            else if (WEXITSTATUS(status) == 10) ++refused;
        }
        assert_int_equal(winners, 1);
        assert_int_equal(refused, writers - 1);
        assert_int_equal(model_seed(dir), winner);
        /* The metadata and the winner's one data file: nothing of the losers. */
        assert_int_equal(count_dir_entries(dir), 2);
        assert_int_equal(unreferenced_files(dir), 0);
        free(dir);
    }
}

typedef struct race_arg {
    const char *dir;
    uint32_t seed;
    uint32_t flags;
    int rc;
} race_arg;

static void *race_thread(void *p) {
    race_arg *a = p;
    a->rc = save_model(a->dir, a->seed, a->flags);
    return NULL;
}

static void test_concurrent_threads_one_winner(void **state) {
    const char *tmp = *state;
    enum { trials = 10, writers = 4 };
    for (int trial = 0; trial < trials; ++trial) {
        char name[32];
        snprintf(name, sizeof name, "threads-%d", trial);
        char *dir = path_join(tmp, name);
        pthread_t th[writers];
        race_arg args[writers];
        for (int w = 0; w < writers; ++w) {
            args[w] = (race_arg){dir, (uint32_t)(w + 1), 0, -1};
            assert_int_equal(pthread_create(&th[w], NULL, race_thread, &args[w]), 0);
        }
        int winners = 0, winner = -1;
        for (int w = 0; w < writers; ++w) {
            pthread_join(th[w], NULL);
            if (args[w].rc == 0) ++winners, winner = w + 1;
            else assert_int_equal(args[w].rc, SHARDPOINT_EEXISTS);
        }
        assert_int_equal(winners, 1);
        assert_int_equal(model_seed(dir), winner);
        assert_int_equal(count_dir_entries(dir), 2);
        free(dir);
    }
}

/* Concurrent overwrite saves all succeed, one after the other; the last one's checkpoint is
 * whole and no file of the others is left. */
static void test_concurrent_overwrites_serialize(void **state) {
    const char *tmp = *state;
    char *dir = path_join(tmp, "overwrites");
    SP_OK(save_model(dir, 9, 0));
    enum { writers = 4 };
    pid_t pids[writers];
    for (int w = 0; w < writers; ++w) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) _exit(save_model(dir, (uint32_t)(w + 1), SHARDPOINT_SAVE_OVERWRITE) == 0 ? 0 : 1);
    }
    for (int w = 0; w < writers; ++w) {
        int status = 0;
        waitpid(pids[w], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    int seed = model_seed(dir);
    assert_true(seed >= 1 && seed <= writers);
    assert_int_equal(count_dir_entries(dir), 2);
    free(dir);
}

/* --- debris ----------------------------------------------------------------------------------- */

static const char *DEBRIS_DATA = "data-0123456789abcdef0123456789abcdef-r00003.bin";
static const char *DEBRIS_META = "shardpoint.meta.tmp-fedcba9876543210fedcba9876543210";
/* Names that only look like ours, and a user's file: never touched. */
static const char *KEEP[] = {"notes.txt", "data-foo.bin", "data-0123456789ABCDEF0123456789ABCDEF-r00001.bin",
                             "shardpoint.meta.tmp-123"};

static void plant(const char *dir, const char *name, size_t size) {
    char *p = path_join(dir, name);
    char *buf = calloc(1, size + 1);
    assert_int_equal(write_file(p, buf, size), 0);
    free(buf);
    free(p);
}

static int exists_in(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    int e = file_exists(p);
    free(p);
    return e;
}

static void plant_all(const char *dir) {
    plant(dir, DEBRIS_DATA, 5000);
    plant(dir, DEBRIS_META, 77);
    for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; ++i) plant(dir, KEEP[i], 3);
}

static void assert_only_debris_gone(const char *dir) {
    assert_false(exists_in(dir, DEBRIS_DATA));
    assert_false(exists_in(dir, DEBRIS_META));
    for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; ++i) assert_true(exists_in(dir, KEEP[i]));
}

/* A new save removes the debris of killed saves, and only that. */
static void test_save_removes_debris(void **state) {
    char *dir = path_join(*state, "debris");
    SP_OK(save_model(dir, 1, 0));
    plant_all(dir);
    assert_int_equal(unreferenced_files(dir), 2);
    SP_OK(save_model(dir, 2, SHARDPOINT_SAVE_OVERWRITE));
    assert_only_debris_gone(dir);
    assert_int_equal(model_seed(dir), 2);
    assert_int_equal(unreferenced_files(dir), 0);
    free(dir);
}

/* Debris in a directory without a checkpoint goes with the first save there too. */
static void test_first_save_removes_debris(void **state) {
    char *dir = path_join(*state, "fresh");
    assert_int_equal(mkdir(dir, 0755), 0);
    plant_all(dir);
    SP_OK(save_model(dir, 3, 0));
    assert_only_debris_gone(dir);
    assert_int_equal(model_seed(dir), 3);
    free(dir);
}

typedef struct gc_seen {
    int count;
    char names[8][80];
    uint64_t sizes[8];
} gc_seen;

static int gc_record(void *user, const char *name, uint64_t size) {
    gc_seen *s = user;
    if (s->count < 8) {
        snprintf(s->names[s->count], sizeof s->names[0], "%s", name);
        s->sizes[s->count] = size;
    }
    ++s->count;
    return 0;
}

static int gc_stop(void *user, const char *name, uint64_t size) {
    (void)name, (void)size;
    ++*(int *)user;
    return 1;
}

static void test_gc_reports_then_removes_exactly_the_debris(void **state) {
    char *dir = path_join(*state, "gc");
    SP_OK(save_model(dir, 4, 0));
    plant_all(dir);
    gc_seen seen = {0};
    uint64_t files = 0, bytes = 0;
    SP_OK(shardpoint_gc(dir, SHARDPOINT_GC_DRY_RUN, gc_record, &seen, &files, &bytes));
    assert_int_equal(seen.count, 2);
    assert_int_equal(files, 2);
    assert_int_equal(bytes, 5077);
    assert_string_equal(seen.names[0], DEBRIS_DATA); /* sorted by name */
    assert_int_equal(seen.sizes[0], 5000);
    assert_string_equal(seen.names[1], DEBRIS_META);
    assert_true(exists_in(dir, DEBRIS_DATA)); /* a dry run removes nothing */

    int calls = 0;
    SP_OK(shardpoint_gc(dir, 0, gc_stop, &calls, &files, &bytes));
    assert_int_equal(calls, 1);
    assert_int_equal(files, 0);
    assert_true(exists_in(dir, DEBRIS_DATA)); /* the callback said stop before removing it */

    SP_OK(shardpoint_gc(dir, 0, NULL, NULL, &files, &bytes));
    assert_int_equal(files, 2);
    assert_int_equal(bytes, 5077);
    assert_only_debris_gone(dir);
    assert_int_equal(model_seed(dir), 4);
    SP_OK(shardpoint_gc(dir, 0, NULL, NULL, &files, NULL));
    assert_int_equal(files, 0);
    free(dir);
}

static void test_gc_refuses_damaged_metadata_and_missing_dirs(void **state) {
    char *dir = path_join(*state, "damaged");
    SP_OK(save_model(dir, 5, 0));
    plant(dir, DEBRIS_DATA, 10);
    char *meta = path_join(dir, "shardpoint.meta");
    assert_int_equal(flip_byte(meta, file_size(meta) - 3), 0); /* body CRC fails, header is fine */
    uint64_t files = 99;
    SP_FAILS(shardpoint_gc(dir, 0, NULL, NULL, &files, NULL), SHARDPOINT_ECHECKSUM, "CRC");
    assert_int_equal(files, 99); /* untouched on failure */
    assert_true(exists_in(dir, DEBRIS_DATA));
    int data_count = 0;
    data_files_total(dir, &data_count);
    assert_int_equal(data_count, 2); /* the damaged checkpoint's data file and the debris */
    char *missing = path_join(*state, "no-such-dir");
    SP_FAILS(shardpoint_gc(missing, 0, NULL, NULL, NULL, NULL), SHARDPOINT_ENOTFOUND, "no-such-dir");
    SP_FAILS(shardpoint_gc(NULL, 0, NULL, NULL, NULL, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_gc(dir, 0x80, NULL, NULL, NULL, NULL), SHARDPOINT_EINVAL, "flags");
    free(missing);
    free(meta);
    free(dir);
}

/* --- what a power cut can leave --------------------------------------------------------------- */

/* An empty, short or zero-filled shardpoint.meta (an unsynced write cut by a power loss) is not a
 * checkpoint: a save without overwrite goes ahead and replaces it. */
static void test_torn_metadata_does_not_block_a_retry(void **state) {
    static const size_t sizes[] = {0, 17, 31, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
        char name[32];
        snprintf(name, sizeof name, "torn-%zu", sizes[i]);
        char *dir = path_join(*state, name);
        assert_int_equal(mkdir(dir, 0755), 0);
        plant(dir, "shardpoint.meta", sizes[i]);
        shardpoint_reader *r = NULL;
        assert_int_not_equal(shardpoint_reader_open(&r, dir, NULL), SHARDPOINT_OK);
        SP_OK(save_model(dir, 6, 0));
        assert_int_equal(model_seed(dir), 6);
        free(dir);
    }
}

/* A metadata file with a valid header but a damaged body is a (damaged) checkpoint: refused
 * without overwrite, replaced with it. */
static void test_damaged_checkpoint_needs_overwrite(void **state) {
    char *dir = path_join(*state, "damaged-body");
    SP_OK(save_model(dir, 7, 0));
    char *meta = path_join(dir, "shardpoint.meta");
    assert_int_equal(flip_byte(meta, 40), 0);
    SP_FAILS(save_model(dir, 8, 0), SHARDPOINT_EEXISTS, "overwrite");
    SP_OK(save_model(dir, 8, SHARDPOINT_SAVE_OVERWRITE));
    assert_int_equal(model_seed(dir), 8);
    assert_int_equal(count_dir_entries(dir), 2); /* the damaged checkpoint's data file is gone too */
    free(meta);
    free(dir);
}

/* --- coverage at save time --------------------------------------------------------------------- */

static void test_gap_is_refused_before_anything_is_written(void **state) {
    char *dir = path_join(*state, "gap");
    tdesc w = model_w(1);
    const uint64_t top[2] = {32, 48};
    void *data = make_box(&w, ZEROS, top);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "w", w.dtype, 2, w.shape, ZEROS, top, data, NULL));
    SP_FAILS(shardpoint_save_commit(s), SHARDPOINT_EUNCOVERED, "1536 of its 3072");
    shardpoint_save_free(s);
    assert_true(count_dir_entries(dir) <= 0); /* no file written */

    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_ALLOW_PARTIAL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, "w", w.dtype, 2, w.shape, ZEROS, top, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_entry_info(r, 0, &e));
    assert_int_equal(e.covered_numel, 1536);
    shardpoint_reader_free(r);
    free(data);
    free(dir);
}

/* Ranks that together cover a tensor pass; a gap between ranks is found across ranks. */
static void gap_rank(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    const char *dir = arg;
    tdesc w = model_w(2);
    /* Ranks own row bands; rank 1 leaves out its last row when the directory name says so. */
    uint64_t offs[2] = {part_lo(w.shape[0], rank, world), 0};
    uint64_t sizes[2] = {part_len(w.shape[0], rank, world), w.shape[1]};
    if (strstr(dir, "holes") && rank == 1) sizes[0] -= 1;
    void *data = make_box(&w, offs, sizes);
    shardpoint_save *s = NULL;
    if (!rank_note(res, shardpoint_save_new(&s, dir, comm, NULL), "save_new") &&
        !rank_note(res, shardpoint_save_add_tensor(s, "w", w.dtype, 2, w.shape, offs, sizes, data, NULL), "add"))
        rank_note(res, shardpoint_save_commit(s), "commit");
    shardpoint_save_free(s);
    free(data);
}

static void test_gap_between_ranks(void **state) {
    char *whole = path_join(*state, "ranks-whole"), *holes = path_join(*state, "ranks-holes");
    rank_result res[3];
    assert_int_equal(run_ranks(3, gap_rank, whole, res), 0);
    for (int r = 0; r < 3; ++r) assert_int_equal(res[r].rc, 0);
    assert_int_equal(run_ranks(3, gap_rank, holes, res), 0);
    assert_int_equal(res[0].rc, SHARDPOINT_EUNCOVERED); /* the coordinator's decision, on every rank */
    assert_int_equal(res[1].rc, SHARDPOINT_EUNCOVERED);
    assert_int_equal(res[2].rc, SHARDPOINT_EUNCOVERED);
    assert_non_null(strstr(res[2].message, "'w'"));
    assert_true(count_dir_entries(holes) <= 0);
    free(whole);
    free(holes);
}

/* --- flags -------------------------------------------------------------------------------------- */

static void test_durability_flags(void **state) {
    char *dir = path_join(*state, "flags");
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_FSYNC | SHARDPOINT_SAVE_NO_FSYNC;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "contradict");
    assert_null(s);
    SP_OK(save_model(dir, 10, SHARDPOINT_SAVE_NO_FSYNC));
    SP_OK(save_model(dir, 11, SHARDPOINT_SAVE_OVERWRITE | SHARDPOINT_SAVE_FSYNC));
    assert_int_equal(model_seed(dir), 11);
    assert_int_equal(count_dir_entries(dir), 2);
    assert_string_equal(shardpoint_error_name(SHARDPOINT_ENOSPC), "SHARDPOINT_ENOSPC");
    assert_string_equal(shardpoint_error_name(SHARDPOINT_ENOTDURABLE), "SHARDPOINT_ENOTDURABLE");
    free(dir);
}

/* --- a real full disk --------------------------------------------------------------------------- */

/* On a 1 MiB tmpfs (root only; skipped elsewhere) a save that does not fit fails with
 * SHARDPOINT_ENOSPC, removes what it wrote and leaves the previous checkpoint loadable. */
static void test_full_disk_is_enospc(void **state) {
    char *mnt = path_join(*state, "small-fs");
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        free(mnt);
        skip();
    }
    char *dir = path_join(mnt, "ckpt");
    SP_OK(save_model(dir, 12, 0)); /* about 16 KiB */
    tdesc big = {"big", SHARDPOINT_DTYPE_U8, 1, {4u << 20}, 1};
    void *data = make_box(&big, ZEROS, big.shape);
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, "big", big.dtype, 1, big.shape, ZEROS, big.shape, data, NULL));
    SP_FAILS(shardpoint_save_commit(s), SHARDPOINT_ENOSPC, "No space left");
    shardpoint_save_free(s);
    free(data);
    assert_int_equal(model_seed(dir), 12);
    assert_int_equal(count_dir_entries(dir), 2);
    umount(mnt);
    free(dir);
    free(mnt);
}

/* Starts a save of model_w(seed) into dir and commits it; the handle stays alive. */
static shardpoint_save *committed_not_freed(const char *dir, uint32_t seed, uint32_t flags, void **buf, int want) {
    tdesc w = model_w(seed);
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = flags;
    shardpoint_save *save = NULL;
    SP_OK(shardpoint_save_new(&save, dir, NULL, &o));
    *buf = make_box(&w, ZEROS, w.shape);
    SP_OK(shardpoint_save_add_tensor(save, w.fqn, w.dtype, w.ndim, w.shape, ZEROS, w.shape, *buf, NULL));
    assert_int_equal(shardpoint_save_commit(save), want);
    return save;
}

/* The directory's save lock is held for the commit, not for the handle's life: a committed (or
 * failed) save that is not freed yet does not block the next save into the same directory. */
static void test_commit_releases_the_save_lock(void **state) {
    char *dir = path_join(*state, "ckpt");
    void *first_buf, *refused_buf, *next_buf;
    shardpoint_save *first = committed_not_freed(dir, 1, 0, &first_buf, SHARDPOINT_OK);
    shardpoint_save *refused = committed_not_freed(dir, 2, 0, &refused_buf, SHARDPOINT_EEXISTS);
    alarm(60); /* a save blocked on the lock would hang here: fail instead */
    shardpoint_save *next = committed_not_freed(dir, 3, SHARDPOINT_SAVE_OVERWRITE, &next_buf, SHARDPOINT_OK);
    alarm(0);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    tdesc w = model_w(3);
    assert_int_equal(load_whole_mismatches(r, &w, NULL), 0);
    shardpoint_reader_free(r);
    shardpoint_save_free(first), shardpoint_save_free(refused), shardpoint_save_free(next);
    free(first_buf), free(refused_buf), free(next_buf);
    free(dir);
}

#define T(f) cmocka_unit_test_setup_teardown(f, dir_setup, dir_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_concurrent_processes_one_winner),
        T(test_concurrent_threads_one_winner),
        T(test_concurrent_overwrites_serialize),
        T(test_save_removes_debris),
        T(test_first_save_removes_debris),
        T(test_gc_reports_then_removes_exactly_the_debris),
        T(test_gc_refuses_damaged_metadata_and_missing_dirs),
        T(test_torn_metadata_does_not_block_a_retry),
        T(test_damaged_checkpoint_needs_overwrite),
        T(test_gap_is_refused_before_anything_is_written),
        T(test_gap_between_ranks),
        T(test_durability_flags),
        T(test_full_disk_is_enospc),
        T(test_commit_releases_the_save_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
