/* The storage-layer writer phases driven by a host that moves the plans and results itself (as
 * torch.distributed.checkpoint or an MPI code would): the happy path with replicated chunks, every
 * out-of-order call, malformed and misdirected messages, refusals at the global plan, and abort. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

enum { WORLD = 3 };

static const tdesc W = {"layers.0.w", SHARDPOINT_DTYPE_F32, 2, {12, 10}, 3};
static const tdesc B = {"layers.0.b", SHARDPOINT_DTYPE_BF16, 1, {10}, 4};
static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* One save of WORLD ranks: W in row bands, B replicated on every rank, a blob on rank 2. */
typedef struct job {
    shardpoint_writer *w[WORLD];
    void *rows[WORLD];
    void *bias;
    const void *plan[WORLD];
    uint64_t plan_len[WORLD];
    const void *result[WORLD];
    uint64_t result_len[WORLD];
} job;

static void job_start(job *j, const char *dir, const shardpoint_save_options *o, int rows_of_rank2) {
    memset(j, 0, sizeof *j);
    j->bias = make_box(&B, ZEROS, B.shape);
    for (int r = 0; r < WORLD; ++r) {
        SP_OK(shardpoint_writer_new(&j->w[r], dir, o));
        SP_OK(shardpoint_writer_set_up(j->w[r], r, WORLD));
        uint64_t offs[2] = {part_lo(W.shape[0], r, WORLD), 0};
        uint64_t sizes[2] = {r == 2 ? (uint64_t)rows_of_rank2 : part_len(W.shape[0], r, WORLD), W.shape[1]};
        j->rows[r] = make_box(&W, offs, sizes);
        SP_OK(shardpoint_writer_add_tensor(j->w[r], W.fqn, W.dtype, 2, W.shape, offs, sizes, j->rows[r], NULL));
        SP_OK(shardpoint_writer_add_tensor(j->w[r], B.fqn, B.dtype, 1, B.shape, ZEROS, B.shape, j->bias, NULL));
        if (r == 2) SP_OK(shardpoint_writer_add_bytes(j->w[r], "extra", "host-state", 10));
        SP_OK(shardpoint_writer_set_metadata(j->w[r], "step", r == 0 ? "100" : "ignored"));
        SP_OK(shardpoint_writer_local_plan(j->w[r], &j->plan[r], &j->plan_len[r]));
    }
}

static void job_end(job *j) {
    for (int r = 0; r < WORLD; ++r) {
        shardpoint_writer_free(j->w[r]);
        free(j->rows[r]);
    }
    free(j->bias);
}

/* The host's part: final plans from the coordinator to each rank, results back. */
static void job_write(job *j) {
    for (int r = 0; r < WORLD; ++r) {
        const void *final_plan = NULL;
        uint64_t len = 0;
        SP_OK(shardpoint_writer_final_plan(j->w[0], (uint32_t)r, &final_plan, &len));
        SP_OK(shardpoint_writer_write(j->w[r], final_plan, len, &j->result[r], &j->result_len[r]));
    }
}

static void test_phases_save_a_loadable_checkpoint(void **state) {
    char *dir = path_join(*state, "ckpt");
    job j;
    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD));
    SP_OK(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len));
    job_write(&j);
    int32_t committed = -1;
    SP_OK(shardpoint_writer_committed(j.w[0], &committed));
    assert_int_equal(committed, 0);
    SP_OK(shardpoint_writer_finish(j.w[0], WORLD, j.result, j.result_len));
    SP_OK(shardpoint_writer_committed(j.w[0], &committed));
    assert_int_equal(committed, 1);
    job_end(&j);

    shardpoint_reader *rd = NULL;
    SP_OK(shardpoint_reader_open(&rd, dir, NULL));
    assert_int_equal(load_whole_mismatches(rd, &W, NULL), 0);
    assert_int_equal(load_whole_mismatches(rd, &B, NULL), 0);
    char blob[16];
    uint64_t len = 0;
    SP_OK(shardpoint_reader_read_bytes(rd, "extra", blob, sizeof blob, &len));
    assert_int_equal(len, 10);
    assert_memory_equal(blob, "host-state", 10);
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(rd, B.fqn, &index));
    SP_OK(shardpoint_reader_entry_info(rd, index, &e));
    assert_int_equal(e.chunk_count, 1); /* replicated on three ranks, written once */
    const char *step = NULL;
    SP_OK(shardpoint_reader_metadata_get(rd, "step", &step));
    assert_string_equal(step, "100"); /* the coordinator's */
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(rd, &info));
    assert_int_equal(info.world_size, WORLD);
    assert_int_equal(info.file_count, 3);
    shardpoint_reader_free(rd);
    free(dir);
}

static void test_phases_out_of_order(void **state) {
    char *dir = path_join(*state, "order");
    shardpoint_writer *w = NULL;
    const void *p = NULL;
    uint64_t n = 0;
    SP_OK(shardpoint_writer_new(&w, dir, NULL));
    SP_FAILS(shardpoint_writer_local_plan(w, &p, &n), SHARDPOINT_ESTATE, "set up");
    SP_FAILS(shardpoint_writer_set_up(w, 3, 3), SHARDPOINT_EINVAL, "rank 3");
    SP_OK(shardpoint_writer_set_up(w, 1, 2));
    SP_FAILS(shardpoint_writer_set_up(w, 1, 2), SHARDPOINT_ESTATE, NULL);
    SP_OK(shardpoint_writer_add_bytes(w, "b", "x", 1));
    SP_FAILS(shardpoint_writer_final_plan(w, 0, &p, &n), SHARDPOINT_ESTATE, "global plan");
    SP_OK(shardpoint_writer_local_plan(w, &p, &n));
    SP_FAILS(shardpoint_writer_add_bytes(w, "c", "x", 1), SHARDPOINT_ESTATE, "planned");
    SP_FAILS(shardpoint_writer_set_metadata(w, "k", "v"), SHARDPOINT_ESTATE, "planned");
    SP_FAILS(shardpoint_writer_local_plan(w, &p, &n), SHARDPOINT_ESTATE, NULL);
    SP_FAILS(shardpoint_writer_global_plan(w, 1, &p, &n), SHARDPOINT_ESTATE, "coordinator");
    SP_FAILS(shardpoint_writer_finish(w, 0, NULL, NULL), SHARDPOINT_ESTATE, "coordinator");
    shardpoint_writer_free(w);
    shardpoint_writer_free(NULL);
    SP_FAILS(shardpoint_writer_abort(NULL), SHARDPOINT_EINVAL, "NULL");
    free(dir);
}

static void test_phases_malformed_and_misdirected_messages(void **state) {
    char *dir = path_join(*state, "messages");
    job j;
    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD));
    /* Wrong number of plans, garbage, a plan in the wrong slot. */
    SP_FAILS(shardpoint_writer_global_plan(j.w[0], 2, j.plan, j.plan_len), SHARDPOINT_EINVAL, "3 local plans");
    const void *bad[WORLD] = {j.plan[0], "garbage!", j.plan[2]};
    uint64_t bad_len[WORLD] = {j.plan_len[0], 8, j.plan_len[2]};
    SP_FAILS(shardpoint_writer_global_plan(j.w[0], WORLD, bad, bad_len), SHARDPOINT_EINVAL, "local save plan");
    const void *swapped[WORLD] = {j.plan[0], j.plan[2], j.plan[1]};
    uint64_t swapped_len[WORLD] = {j.plan_len[0], j.plan_len[2], j.plan_len[1]};
    SP_FAILS(shardpoint_writer_global_plan(j.w[0], WORLD, swapped, swapped_len), SHARDPOINT_EINVAL, "rank 2's");
    SP_OK(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len));
    const void *final0 = NULL, *res = NULL;
    uint64_t final0_len = 0, res_len = 0;
    SP_OK(shardpoint_writer_final_plan(j.w[0], 0, &final0, &final0_len));
    SP_FAILS(shardpoint_writer_final_plan(j.w[0], WORLD, &final0, &final0_len), SHARDPOINT_ERANGE, "rank 3");
    /* Rank 1 given rank 0's final plan, or its own local plan, refuses to write. */
    SP_FAILS(shardpoint_writer_write(j.w[1], final0, final0_len, &res, &res_len), SHARDPOINT_EINVAL, "rank 0's");
    SP_FAILS(shardpoint_writer_write(j.w[1], j.plan[1], j.plan_len[1], &res, &res_len), SHARDPOINT_EINVAL, "local plan");
    job_write(&j);
    SP_FAILS(shardpoint_writer_write(j.w[1], final0, final0_len, &res, &res_len), SHARDPOINT_ESTATE, "once");
    const void *short_results[WORLD] = {j.result[0], j.result[1], "12345678"};
    uint64_t short_len[WORLD] = {j.result_len[0], j.result_len[1], 8};
    SP_FAILS(shardpoint_writer_finish(j.w[0], WORLD, short_results, short_len), SHARDPOINT_EINVAL, "write results");
    /* The failed finish committed nothing; the host aborts everywhere and nothing is left. */
    for (int r = 0; r < WORLD; ++r) SP_OK(shardpoint_writer_abort(j.w[r]));
    job_end(&j);
    int count = -1;
    data_files_total(dir, &count);
    assert_int_equal(count, 0);
    assert_false(file_exists(dir) && count_dir_entries(dir) > 0);
    free(dir);
}

static void test_phases_refusals_at_the_global_plan(void **state) {
    char *dir = path_join(*state, "refusals");
    job j;
    /* Rank 2 offers one row short: the tensor would have a gap. */
    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD) - 1);
    SP_FAILS(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len), SHARDPOINT_EUNCOVERED, W.fqn);
    job_end(&j);
    assert_true(count_dir_entries(dir) <= 0);

    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD));
    SP_OK(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len));
    job_write(&j);
    SP_OK(shardpoint_writer_finish(j.w[0], WORLD, j.result, j.result_len));
    job_end(&j);

    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD));
    SP_FAILS(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len), SHARDPOINT_EEXISTS, "overwrite");
    job_end(&j);
    free(dir);
}

/* A rank fails after others wrote: the host aborts every rank; the previous checkpoint stays. */
static void test_phases_abort_keeps_the_previous_checkpoint(void **state) {
    char *dir = path_join(*state, "abort");
    tdesc old = {"old", SHARDPOINT_DTYPE_I32, 1, {100}, 9};
    SP_OK(save_whole(dir, &old, 1, NULL));
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    job j;
    job_start(&j, dir, &o, (int)part_len(W.shape[0], 2, WORLD));
    SP_OK(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len));
    job_write(&j);
    int before = 0;
    data_files_total(dir, &before);
    assert_int_equal(before, 4);
    for (int r = 0; r < WORLD; ++r) SP_OK(shardpoint_writer_abort(j.w[r]));
    job_end(&j);
    int after = 0;
    data_files_total(dir, &after);
    assert_int_equal(after, 1);
    shardpoint_reader *rd = NULL;
    SP_OK(shardpoint_reader_open(&rd, dir, NULL));
    assert_int_equal(load_whole_mismatches(rd, &old, NULL), 0);
    shardpoint_reader_free(rd);
    free(dir);
}

/* A committed checkpoint of W saved by WORLD ranks, one row chunk each. */
static void save_rows_of_w(const char *dir) {
    job j;
    job_start(&j, dir, NULL, (int)part_len(W.shape[0], 2, WORLD));
    SP_OK(shardpoint_writer_global_plan(j.w[0], WORLD, j.plan, j.plan_len));
    job_write(&j);
    SP_OK(shardpoint_writer_finish(j.w[0], WORLD, j.result, j.result_len));
    job_end(&j);
}

/* The reader side: the host plans ReadItems itself (chunk + box inside it) and shardpoint reads
 * them, here the transpose of rows 3..8 of W into a column-major buffer from the chunks that
 * hold them. */
static void test_host_planned_reads(void **state) {
    char *dir = path_join(*state, "reads");
    save_rows_of_w(dir);

    shardpoint_reader *rd = NULL;
    SP_OK(shardpoint_reader_open(&rd, dir, NULL));
    uint64_t index = 0;
    SP_OK(shardpoint_reader_find(rd, W.fqn, &index));
    const uint64_t lo = 3, hi = 9, cols = W.shape[1];
    float *dst = calloc((hi - lo) * cols, sizeof(float));
    const int64_t col_major[2] = {1, (int64_t)(hi - lo)}; /* element (i, k) at i + k * rows */
    shardpoint_load *load = NULL;
    SP_OK(shardpoint_load_new(&load, rd, NULL));
    int items = 0;
    for (int r = 0; r < WORLD; ++r) {
        uint64_t start[2] = {part_lo(W.shape[0], r, WORLD), 0}, chunk = 99;
        uint64_t end = start[0] + part_len(W.shape[0], r, WORLD);
        SP_OK(shardpoint_reader_find_chunk(rd, index, 2, start, &chunk));
        if (end <= lo || start[0] >= hi) continue;
        uint64_t a = start[0] > lo ? start[0] : lo, b = end < hi ? end : hi;
        uint64_t inside[2] = {a - start[0], 0}, lengths[2] = {b - a, cols};
        SP_OK(shardpoint_load_add_chunk(load, W.fqn, W.dtype, chunk, 2, inside, lengths, dst + (a - lo), col_major));
        ++items;
    }
    assert_int_equal(items, 3); /* rows 0..3, 4..7 and 8..11 all hold some of rows 3..8 */
    SP_OK(shardpoint_load_execute(load));
    shardpoint_load_free(load);
    const uint64_t box_offs[2] = {lo, 0}, box_sizes[2] = {hi - lo, cols};
    assert_int_equal(check_box(&W, box_offs, box_sizes, dst, col_major), 0);

    /* Mistakes name the numbers. */
    uint64_t chunk = 0, at[2] = {1, 0}, zero[2] = {0, 0}, too_long[2] = {5, cols};
    SP_FAILS(shardpoint_reader_find_chunk(rd, index, 2, at, &chunk), SHARDPOINT_ENOTFOUND, "[1, 0]");
    SP_FAILS(shardpoint_reader_find_chunk(rd, index, 1, at, &chunk), SHARDPOINT_ESHAPE, "2 dimensions");
    SP_FAILS(shardpoint_reader_find_chunk(rd, 99, 2, at, &chunk), SHARDPOINT_ERANGE, "99");
    SP_OK(shardpoint_load_new(&load, rd, NULL));
    SP_FAILS(shardpoint_load_add_chunk(load, W.fqn, W.dtype, 0, 2, zero, too_long, dst, NULL), SHARDPOINT_ESHAPE,
             "sizes [5, 10]");
    SP_FAILS(shardpoint_load_add_chunk(load, W.fqn, W.dtype, 7, 2, zero, box_sizes, dst, NULL), SHARDPOINT_ERANGE, "chunk 7");
    SP_FAILS(shardpoint_load_add_chunk(load, W.fqn, SHARDPOINT_DTYPE_F64, 0, 2, zero, box_sizes, dst, NULL),
             SHARDPOINT_EDTYPE, "f32");
    SP_FAILS(shardpoint_load_add_chunk(load, "extra", SHARDPOINT_DTYPE_U8, 0, 1, zero, box_sizes, dst, NULL),
             SHARDPOINT_EKIND, "bytes");
    shardpoint_load_free(load);
    free(dst);
    shardpoint_reader_free(rd);
    free(dir);
}

/* The bulk metadata calls agree with the per-entry and per-chunk ones they stand for. */
static void test_bulk_metadata(void **state) {
    char *dir = path_join(*state, "bulk");
    save_rows_of_w(dir);

    shardpoint_reader *rd = NULL;
    SP_OK(shardpoint_reader_open(&rd, dir, NULL));
    uint64_t count = 0, len = 0;
    const char *names = NULL;
    SP_OK(shardpoint_reader_entry_count(rd, &count));
    assert_true(count >= 2);
    SP_OK(shardpoint_reader_entry_names(rd, &names, &len));
    const char *again = NULL;
    uint64_t again_len = 0;
    SP_OK(shardpoint_reader_entry_names(rd, &again, &again_len));
    assert_ptr_equal(again, names); /* built once, owned by the reader */
    assert_int_equal(again_len, len);
    const char *name = names;
    int tensors = 0;
    for (uint64_t i = 0; i < count; ++i) {
        shardpoint_entry_info info;
        SP_OK(shardpoint_reader_entry_info(rd, i, &info));
        assert_string_equal(name, info.fqn);
        name += strlen(name) + 1;
        uint64_t n = info.chunk_count, ndim = info.ndim;
        uint64_t *offs = calloc(n * ndim + 1, sizeof(uint64_t)), *sizes = calloc(n * ndim + 1, sizeof(uint64_t));
        SP_OK(shardpoint_reader_chunk_boxes(rd, i, 0, n, offs, sizes));
        for (uint64_t c = 0; c < n; ++c) {
            shardpoint_chunk_info chunk;
            SP_OK(shardpoint_reader_chunk_info(rd, i, c, &chunk));
            for (uint64_t d = 0; d < ndim; ++d) {
                assert_int_equal(offs[c * ndim + d], chunk.offsets[d]);
                assert_int_equal(sizes[c * ndim + d], chunk.sizes[d]);
            }
        }
        if (n > 1) { /* a window of the chunks: the last one alone */
            SP_OK(shardpoint_reader_chunk_boxes(rd, i, n - 1, 1, offs, sizes));
            shardpoint_chunk_info last;
            SP_OK(shardpoint_reader_chunk_info(rd, i, n - 1, &last));
            assert_int_equal(offs[0], last.offsets[0]);
            assert_int_equal(sizes[0], last.sizes[0]);
            ++tensors;
        }
        SP_FAILS(shardpoint_reader_chunk_boxes(rd, i, n, 1, offs, sizes), SHARDPOINT_ERANGE, "chunks");
        SP_FAILS(shardpoint_reader_chunk_boxes(rd, i, 1, UINT64_MAX, offs, sizes), SHARDPOINT_ERANGE, "chunks");
        free(offs);
        free(sizes);
    }
    assert_int_equal(tensors, 1); /* W, in WORLD row chunks */
    assert_ptr_equal(name, names + len);
    uint64_t one = 0;
    SP_FAILS(shardpoint_reader_chunk_boxes(rd, count, 0, 1, &one, &one), SHARDPOINT_ERANGE, "entry index");
    SP_FAILS(shardpoint_reader_entry_names(rd, NULL, &len), SHARDPOINT_EINVAL, "out_names");
    shardpoint_reader_free(rd);
    free(dir);
}

/* A host that resolves its data only when writing (as DCP does): items planned without data,
 * bound once the final plan says which to write; bytes of unknown length; a rank with nothing to
 * write; framework metadata carried in the checkpoint. */
static void test_planned_then_bound(void **state) {
    char *dir = path_join(*state, "bound");
    enum { ranks = 3 };
    shardpoint_writer *w[ranks];
    const void *plan[ranks], *result[ranks];
    uint64_t plan_len[ranks], result_len[ranks];
    void *rows[ranks] = {NULL, NULL, NULL};
    const char *state_text[ranks] = {"rank zero state", "rank one", "two"};
    for (int r = 0; r < ranks; ++r) {
        SP_OK(shardpoint_writer_new(&w[r], dir, NULL));
        SP_OK(shardpoint_writer_set_up(w[r], r, ranks));
        if (r < 2) { /* rank 2 holds no tensor rows: W is split between ranks 0 and 1 */
            uint64_t offs[2] = {(uint64_t)r * 6, 0}, sizes[2] = {6, W.shape[1]};
            SP_OK(shardpoint_writer_plan_tensor(w[r], W.fqn, W.dtype, 2, W.shape, offs, sizes));
        }
        SP_OK(shardpoint_writer_plan_bytes(w[r], "extra_state")); /* every rank: written once */
        SP_FAILS(shardpoint_writer_plan_bytes(w[r], "extra_state"), SHARDPOINT_ECONFLICT, "already");
        if (r == 0) SP_OK(shardpoint_writer_set_framework_metadata(w[r], "torch.dcp", "{\"version\": 1}"));
        SP_OK(shardpoint_writer_local_plan(w[r], &plan[r], &plan_len[r]));
    }
    SP_OK(shardpoint_writer_global_plan(w[0], ranks, plan, plan_len));
    int blob_writers = 0;
    for (int r = 0; r < ranks; ++r) {
        const void *final_plan = NULL;
        uint64_t len = 0, count = 0;
        const uint32_t *items = NULL;
        SP_OK(shardpoint_writer_final_plan(w[0], (uint32_t)r, &final_plan, &len));
        SP_OK(shardpoint_writer_assigned(w[r], final_plan, len, &items, &count));
        if (r == 2 && count == 0) { /* nothing assigned: still a zero-length result for the coordinator */
            result[r] = "";
            result_len[r] = 0;
            continue;
        }
        for (uint64_t k = 0; k < count; ++k) {
            if (r < 2 && items[k] == 0) {
                uint64_t offs[2] = {(uint64_t)r * 6, 0}, sizes[2] = {6, W.shape[1]};
                rows[r] = make_box(&W, offs, sizes);
                SP_FAILS(shardpoint_writer_bind_bytes(w[r], items[k], "x", 1), SHARDPOINT_ESTATE, "not a bytes item");
                SP_OK(shardpoint_writer_bind_tensor(w[r], items[k], rows[r], NULL));
                SP_FAILS(shardpoint_writer_bind_tensor(w[r], items[k], rows[r], NULL), SHARDPOINT_ESTATE, "planned without data");
            } else {
                ++blob_writers;
                SP_OK(shardpoint_writer_bind_bytes(w[r], items[k], state_text[r], strlen(state_text[r])));
            }
        }
        SP_FAILS(shardpoint_writer_bind_tensor(w[r], 9, rows[r], NULL), SHARDPOINT_ERANGE, "item 9");
        SP_OK(shardpoint_writer_write(w[r], final_plan, len, &result[r], &result_len[r]));
    }
    assert_int_equal(blob_writers, 1);
    SP_OK(shardpoint_writer_finish(w[0], ranks, result, result_len));
    for (int r = 0; r < ranks; ++r) {
        shardpoint_writer_free(w[r]);
        free(rows[r]);
    }

    shardpoint_reader *rd = NULL;
    SP_OK(shardpoint_reader_open(&rd, dir, NULL));
    assert_int_equal(load_whole_mismatches(rd, &W, NULL), 0);
    char blob[32] = {0};
    uint64_t got = 0;
    SP_OK(shardpoint_reader_read_bytes(rd, "extra_state", blob, sizeof blob, &got));
    int writer = -1;
    for (int r = 0; r < ranks; ++r)
        if (got == strlen(state_text[r]) && memcmp(blob, state_text[r], got) == 0) writer = r;
    assert_true(writer >= 0);
    const char *json = NULL;
    SP_OK(shardpoint_reader_framework_metadata_get(rd, "torch.dcp", &json));
    assert_string_equal(json, "{\"version\": 1}");
    SP_FAILS(shardpoint_reader_framework_metadata_get(rd, "jax", &json), SHARDPOINT_ENOTFOUND, "'jax'");
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(rd, &info));
    assert_int_equal(info.format_minor, 2);
    shardpoint_reader_free(rd);
    free(dir);
}

/* A one-rank save of B planned without data, planned up to its final plan (owned by the writer). */
static shardpoint_writer *planned_bias_alone(const char *dir, const void **final_plan, uint64_t *final_len) {
    shardpoint_writer *w = NULL;
    const void *plan = NULL;
    uint64_t plan_len = 0;
    SP_OK(shardpoint_writer_new(&w, dir, NULL));
    SP_OK(shardpoint_writer_set_up(w, 0, 1));
    SP_OK(shardpoint_writer_plan_tensor(w, B.fqn, B.dtype, 1, B.shape, ZEROS, B.shape));
    SP_OK(shardpoint_writer_local_plan(w, &plan, &plan_len));
    SP_OK(shardpoint_writer_global_plan(w, 1, &plan, &plan_len));
    SP_OK(shardpoint_writer_final_plan(w, 0, final_plan, final_len));
    return w;
}

/* A planned item that is never bound cannot be written. */
static void test_unbound_item_is_refused(void **state) {
    char *dir = path_join(*state, "unbound");
    const void *final_plan = NULL, *res = NULL;
    uint64_t final_len = 0, res_len = 0;
    shardpoint_writer *w = planned_bias_alone(dir, &final_plan, &final_len);
    SP_FAILS(shardpoint_writer_write(w, final_plan, final_len, &res, &res_len), SHARDPOINT_ESTATE, "never bound");
    SP_OK(shardpoint_writer_abort(w));
    shardpoint_writer_free(w);
    int count = -1;
    data_files_total(dir, &count);
    assert_int_equal(count, 0);
    free(dir);
}

/* One rank plans W as 6 row bands and a blob, then binds and writes them in batches, scribbling
 * over and freeing each batch's memory once written: the checkpoint holds the values of the
 * first binding (the library never read a batch again). Raw and compressed. */
static void test_write_in_batches(void **state) {
    for (int level = 0; level <= 6; level += 6) {
        char name[32];
        snprintf(name, sizeof name, "batches-%d", level);
        char *dir = path_join(*state, name);
        shardpoint_save_options o;
        SP_OK(shardpoint_save_options_init(&o, SHARDPOINT_SAVE_OPTIONS_VERSION));
        o.compression_level = level;
        shardpoint_writer *w = NULL;
        const void *plan = NULL, *final_plan = NULL, *res = NULL;
        uint64_t plan_len = 0, final_len = 0, res_len = 0, count = 0;
        const uint32_t *items = NULL;
        SP_OK(shardpoint_writer_new(&w, dir, &o));
        SP_OK(shardpoint_writer_set_up(w, 0, 1));
        enum { bands = 6 };
        for (int b = 0; b < bands; ++b) {
            uint64_t offs[2] = {(uint64_t)b * 2, 0}, sizes[2] = {2, W.shape[1]};
            SP_OK(shardpoint_writer_plan_tensor(w, W.fqn, W.dtype, 2, W.shape, offs, sizes));
        }
        SP_OK(shardpoint_writer_plan_bytes(w, "extra_state"));
        SP_OK(shardpoint_writer_local_plan(w, &plan, &plan_len));
        SP_OK(shardpoint_writer_global_plan(w, 1, &plan, &plan_len));
        SP_OK(shardpoint_writer_final_plan(w, 0, &final_plan, &final_len));
        SP_OK(shardpoint_writer_assigned(w, final_plan, final_len, &items, &count));
        assert_int_equal(count, bands + 1);
        /* Nothing bound yet: a batch of nothing. */
        SP_OK(shardpoint_writer_write_bound(w, final_plan, final_len));
        for (int b = 0; b < bands; b += 2) { /* batches of two bands */
            void *mem[2];
            for (int k = 0; k < 2; ++k) {
                uint64_t offs[2] = {(uint64_t)(b + k) * 2, 0}, sizes[2] = {2, W.shape[1]};
                mem[k] = make_box(&W, offs, sizes);
                SP_OK(shardpoint_writer_bind_tensor(w, (uint64_t)(b + k), mem[k], NULL));
            }
            SP_OK(shardpoint_writer_write_bound(w, final_plan, final_len));
            SP_FAILS(shardpoint_writer_bind_tensor(w, (uint64_t)b, mem[0], NULL), SHARDPOINT_ESTATE, "planned without data");
            for (int k = 0; k < 2; ++k) {
                memset(mem[k], 0xAB, 2 * W.shape[1] * 4);
                free(mem[k]);
            }
        }
        /* Every write call of one save names the same final plan. */
        SP_FAILS(shardpoint_writer_write_bound(w, plan, plan_len), SHARDPOINT_EINVAL, "not the plan");
        char blob[] = "host state";
        SP_OK(shardpoint_writer_bind_bytes(w, bands, blob, strlen(blob)));
        SP_OK(shardpoint_writer_write(w, final_plan, final_len, &res, &res_len));
        memset(blob, 'x', strlen(blob));
        SP_FAILS(shardpoint_writer_write_bound(w, final_plan, final_len), SHARDPOINT_ESTATE, "once");
        SP_OK(shardpoint_writer_finish(w, 1, &res, &res_len));
        shardpoint_writer_free(w);

        shardpoint_reader *rd = NULL;
        SP_OK(shardpoint_reader_open(&rd, dir, NULL));
        SP_OK(shardpoint_reader_verify(rd));
        assert_int_equal(load_whole_mismatches(rd, &W, NULL), 0);
        char got_blob[32] = {0};
        uint64_t got = 0;
        SP_OK(shardpoint_reader_read_bytes(rd, "extra_state", got_blob, sizeof got_blob, &got));
        assert_int_equal(got, 10);
        assert_memory_equal(got_blob, "host state", 10);
        shardpoint_reader_free(rd);
        free(dir);
    }
}

/* A batch that fails (here: the directory is gone, so the data file cannot be created) ends the
 * save's writing: later writes are refused, abort still works, and nothing is committed. */
static void test_failed_batch_ends_the_write(void **state) {
    char *dir = path_join(*state, "failed-batch");
    const void *final_plan = NULL, *res = NULL;
    uint64_t final_len = 0, res_len = 0;
    shardpoint_writer *w = planned_bias_alone(dir, &final_plan, &final_len);
    void *bias = make_box(&B, ZEROS, B.shape);
    SP_OK(shardpoint_writer_bind_tensor(w, 0, bias, NULL));
    char *gone = path_join(*state, "failed-batch-moved");
    assert_int_equal(rename(dir, gone), 0);
    SP_FAILS(shardpoint_writer_write_bound(w, final_plan, final_len), SHARDPOINT_EIO, "create data file");
    SP_FAILS(shardpoint_writer_write(w, final_plan, final_len, &res, &res_len), SHARDPOINT_ESTATE, "failed");
    SP_FAILS(shardpoint_writer_write_bound(w, final_plan, final_len), SHARDPOINT_ESTATE, "failed");
    SP_OK(shardpoint_writer_abort(w));
    shardpoint_writer_free(w);
    int count = -1;
    data_files_total(gone, &count);
    assert_int_equal(count, 0);
    free(bias);
    free(gone);
    free(dir);
}

#define T(f) cmocka_unit_test_setup_teardown(f, dir_setup, dir_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_phases_save_a_loadable_checkpoint),
        T(test_phases_out_of_order),
        T(test_phases_malformed_and_misdirected_messages),
        T(test_phases_refusals_at_the_global_plan),
        T(test_phases_abort_keeps_the_previous_checkpoint),
        T(test_host_planned_reads),
        T(test_bulk_metadata),
        T(test_planned_then_bound),
        T(test_unbound_item_is_refused),
        T(test_write_in_batches),
        T(test_failed_batch_ends_the_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
