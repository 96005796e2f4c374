/* Misuse of the C ABI and the life cycle of checkpoints: every bad request is its own test with
 * its specific code and an informative message; out-parameters stay untouched on failure; NULL
 * is rejected everywhere; saving over a checkpoint is atomic. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};
static const tdesc T1 = {"t", SHARDPOINT_DTYPE_F32, 2, {4, 5}, 1};

typedef struct fixture {
    char *tmp;
    char *dir;
    shardpoint_reader *reader; /* over a checkpoint holding t (whole), half (partly), blob */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    f->tmp = tmp_dir_new("api");
    if (!f->tmp) return -1;
    f->dir = path_join(f->tmp, "ckpt");
    void *t = make_box(&T1, ZEROS, T1.shape);
    const uint64_t half_shape[1] = {10}, half_size[1] = {5};
    int32_t half[5] = {1, 2, 3, 4, 5};
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_ALLOW_PARTIAL; /* "half" is saved half on purpose */
    int rc = shardpoint_save_new(&s, f->dir, NULL, &o);
    if (!rc) rc = shardpoint_save_add_tensor(s, T1.fqn, T1.dtype, 2, T1.shape, ZEROS, T1.shape, t, NULL);
    if (!rc) rc = shardpoint_save_add_tensor(s, "half", SHARDPOINT_DTYPE_I32, 1, half_shape, ZEROS, half_size, half, NULL);
    if (!rc) rc = shardpoint_save_add_bytes(s, "blob", "0123456789", 10);
    if (!rc) rc = shardpoint_save_commit(s);
    shardpoint_save_free(s);
    free(t);
    if (!rc) rc = shardpoint_reader_open(&f->reader, f->dir, NULL);
    return rc ? -1 : 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    shardpoint_reader_free(f->reader);
    tmp_dir_remove(f->tmp);
    free(f->dir);
    free(f);
    return 0;
}

/* --- load requests -------------------------------------------------------------------------- */

static void test_wrong_dtype(void **state) {
    fixture *f = *state;
    int32_t dst[20];
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", SHARDPOINT_DTYPE_I32, 2, ZEROS, T1.shape, dst, NULL),
             SHARDPOINT_EDTYPE, "f32");
    assert_non_null(strstr(shardpoint_last_error(), "i32"));
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", 99, 2, ZEROS, T1.shape, dst, NULL), SHARDPOINT_EDTYPE, "'t'");
}

static void test_box_out_of_range(void **state) {
    fixture *f = *state;
    float dst[20];
    const uint64_t off[2] = {1, 0}, sz[2] = {4, 5};
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 2, off, sz, dst, NULL), SHARDPOINT_ESHAPE, "outside");
    /* offsets that would wrap around must not pass the bound check */
    const uint64_t huge_off[2] = {UINT64_MAX, 0}, two[2] = {2, 5};
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 2, huge_off, two, dst, NULL), SHARDPOINT_ESHAPE,
             "outside");
    const uint64_t wide[2] = {1, UINT64_MAX};
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 2, ZEROS, wide, dst, NULL), SHARDPOINT_ESHAPE, "'t'");
}

static void test_wrong_ndim(void **state) {
    fixture *f = *state;
    float dst[20];
    const uint64_t sz1[1] = {20}, sz3[3] = {4, 5, 1};
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 1, ZEROS, sz1, dst, NULL), SHARDPOINT_ESHAPE,
             "dimensions");
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 3, ZEROS, sz3, dst, NULL), SHARDPOINT_ESHAPE,
             "dimensions");
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 0, NULL, NULL, dst, NULL), SHARDPOINT_ESHAPE,
             "dimensions");
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 33, ZEROS, ZEROS, dst, NULL), SHARDPOINT_ESHAPE,
             "32");
}

static void test_unknown_name(void **state) {
    fixture *f = *state;
    float dst[20];
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "nope", T1.dtype, 2, ZEROS, T1.shape, dst, NULL),
             SHARDPOINT_ENOTFOUND, "'nope'");
    uint64_t index = 4242;
    SP_FAILS(shardpoint_reader_find(f->reader, "nope", &index), SHARDPOINT_ENOTFOUND, "'nope'");
    assert_int_equal(index, 4242);
    uint64_t len = 4242;
    SP_FAILS(shardpoint_reader_read_bytes(f->reader, "nope.blob", dst, sizeof dst, &len), SHARDPOINT_ENOTFOUND,
             "nope.blob");
    assert_int_equal(len, 4242);
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, f->reader, NULL));
    SP_FAILS(shardpoint_load_add_tensor(l, "nope", T1.dtype, 2, ZEROS, T1.shape, dst, NULL), SHARDPOINT_ENOTFOUND, "nope");
    SP_FAILS(shardpoint_load_add_bytes(l, "nope", dst, sizeof dst), SHARDPOINT_ENOTFOUND, "nope");
    /* a prefix of a name is not the name */
    SP_FAILS(shardpoint_load_add_bytes(l, "blo", dst, sizeof dst), SHARDPOINT_ENOTFOUND, "blo");
    uint64_t skipped = 9;
    SP_OK(shardpoint_load_skipped_count(l, &skipped));
    assert_int_equal(skipped, 0);
    shardpoint_load_free(l);
}

static void test_uncovered_box(void **state) {
    fixture *f = *state;
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(f->reader, "half", &index));
    SP_OK(shardpoint_reader_entry_info(f->reader, index, &e));
    assert_int_equal(e.numel, 10);
    assert_int_equal(e.covered_numel, 5);
    int32_t dst[10] = {0};
    const uint64_t in_off[1] = {1}, in_sz[1] = {4}, across_off[1] = {3}, across_sz[1] = {5}, out_off[1] = {6},
                   out_sz[1] = {4};
    SP_OK(shardpoint_reader_read_tensor(f->reader, "half", SHARDPOINT_DTYPE_I32, 1, in_off, in_sz, dst, NULL));
    assert_int_equal(dst[0], 2);
    assert_int_equal(dst[3], 5);
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "half", SHARDPOINT_DTYPE_I32, 1, across_off, across_sz, dst, NULL),
             SHARDPOINT_EUNCOVERED, "'half'");
    assert_non_null(strstr(shardpoint_last_error(), "2 of 5"));
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "half", SHARDPOINT_DTYPE_I32, 1, out_off, out_sz, dst, NULL),
             SHARDPOINT_EUNCOVERED, "0 of 4");
}

static void test_kind_mismatch(void **state) {
    fixture *f = *state;
    unsigned char dst[100];
    const uint64_t len10[1] = {10};
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "blob", SHARDPOINT_DTYPE_U8, 1, ZEROS, len10, dst, NULL),
             SHARDPOINT_EKIND, "'blob'");
    uint64_t len = 4242;
    SP_FAILS(shardpoint_reader_read_bytes(f->reader, "t", dst, sizeof dst, &len), SHARDPOINT_EKIND, "'t'");
    assert_int_equal(len, 4242);
}

static void test_small_buffer(void **state) {
    fixture *f = *state;
    unsigned char dst[10];
    memset(dst, 0x77, sizeof dst);
    uint64_t len = 4242;
    SP_FAILS(shardpoint_reader_read_bytes(f->reader, "blob", dst, 9, &len), SHARDPOINT_ERANGE, "10 bytes");
    assert_int_equal(len, 4242);
    assert_int_equal(dst[0], 0x77);
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, f->reader, NULL));
    SP_FAILS(shardpoint_load_add_bytes(l, "blob", dst, 0), SHARDPOINT_ERANGE, "'blob'");
    shardpoint_load_free(l);
}

static void test_index_out_of_range(void **state) {
    fixture *f = *state;
    shardpoint_entry_info e;
    memset(&e, 0x11, sizeof e);
    shardpoint_entry_info same = e;
    SP_FAILS(shardpoint_reader_entry_info(f->reader, 3, &e), SHARDPOINT_ERANGE, "3");
    assert_memory_equal(&e, &same, sizeof e);
    shardpoint_chunk_info c;
    SP_FAILS(shardpoint_reader_chunk_info(f->reader, 3, 0, &c), SHARDPOINT_ERANGE, "3");
    SP_FAILS(shardpoint_reader_chunk_info(f->reader, 0, 1, &c), SHARDPOINT_ERANGE, "chunk");
    const char *k, *v;
    SP_FAILS(shardpoint_reader_metadata_at(f->reader, 0, &k, &v), SHARDPOINT_ERANGE, "0");
}

static void test_null_destination(void **state) {
    fixture *f = *state;
    SP_FAILS(shardpoint_reader_read_tensor(f->reader, "t", T1.dtype, 2, ZEROS, T1.shape, NULL, NULL), SHARDPOINT_EINVAL,
             "destination");
    uint64_t len;
    SP_FAILS(shardpoint_reader_read_bytes(f->reader, "blob", NULL, 10, &len), SHARDPOINT_EINVAL, "destination");
}

/* --- save-side misuse --------------------------------------------------------------------------- */

/* A fresh save in a subdirectory; the caller frees it. */
static shardpoint_save *new_save(fixture *f, const char *name) {
    char *dir = path_join(f->tmp, name);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    free(dir);
    return s;
}

static const uint64_t SHAPE[2] = {4, 5}, TOP[2] = {2, 5}, MID[2] = {1, 0}, BOTTOM[2] = {2, 0}, OUT[2] = {3, 0};
static float DATA[20];

static void test_offer_unknown_dtype(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_COUNT, 2, SHAPE, ZEROS, SHAPE, DATA, NULL),
             SHARDPOINT_EINVAL, "dtype 17");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", -1, 2, SHAPE, ZEROS, SHAPE, DATA, NULL), SHARDPOINT_EINVAL, "dtype -1");
    shardpoint_save_free(s);
}

static void test_offer_too_many_dims(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 33, ZEROS, ZEROS, ZEROS, DATA, NULL),
             SHARDPOINT_ESHAPE, "32");
    shardpoint_save_free(s);
}

static void test_offer_chunk_outside_shape(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, OUT, TOP, DATA, NULL), SHARDPOINT_ESHAPE,
             "'x'");
    const uint64_t wrap[2] = {UINT64_MAX, 0};
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, wrap, TOP, DATA, NULL),
             SHARDPOINT_ESHAPE, "outside");
    shardpoint_save_free(s);
}

static void test_offer_null_data(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, SHAPE, NULL, NULL),
             SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_add_bytes(s, "b", NULL, 3), SHARDPOINT_EINVAL, "NULL");
    shardpoint_save_free(s);
}

static void test_offer_empty_name(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_FAILS(shardpoint_save_add_tensor(s, "", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, SHAPE, DATA, NULL),
             SHARDPOINT_EINVAL, "empty");
    SP_FAILS(shardpoint_save_add_bytes(s, "", DATA, 3), SHARDPOINT_EINVAL, "empty");
    shardpoint_save_free(s);
}

static void test_offer_overlapping_chunk(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    SP_OK(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, TOP, DATA, NULL));
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, MID, TOP, DATA, NULL),
             SHARDPOINT_ECONFLICT, "overlaps");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, TOP, DATA, NULL),
             SHARDPOINT_ECONFLICT, "overlaps"); /* the identical chunk twice on one rank */
    SP_OK(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, BOTTOM, TOP, DATA, NULL));
    shardpoint_save_free(s);
}

static void test_offer_redefinition(void **state) {
    shardpoint_save *s = new_save(*state, "o");
    const uint64_t other_shape[2] = {4, 6};
    SP_OK(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, TOP, DATA, NULL));
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F64, 2, SHAPE, BOTTOM, TOP, DATA, NULL),
             SHARDPOINT_ECONFLICT, "'x'");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, other_shape, BOTTOM, TOP, DATA, NULL),
             SHARDPOINT_ECONFLICT, "shape");
    SP_FAILS(shardpoint_save_add_bytes(s, "x", DATA, 3), SHARDPOINT_ECONFLICT, "'x'");
    SP_OK(shardpoint_save_add_bytes(s, "b", DATA, 3));
    SP_FAILS(shardpoint_save_add_bytes(s, "b", DATA, 3), SHARDPOINT_ECONFLICT, "'b'");
    shardpoint_save_free(s);
}

/* Refused offers leave the save usable: the accepted ones are committed, nothing else. */
static void test_refused_offers_do_not_spoil_the_save(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "offers");
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_ALLOW_PARTIAL; /* only the top of x is offered */
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, ZEROS, TOP, DATA, NULL));
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, SHAPE, MID, TOP, DATA, NULL),
             SHARDPOINT_ECONFLICT, "overlaps");
    SP_FAILS(shardpoint_save_add_tensor(s, "y", SHARDPOINT_DTYPE_F32, 2, SHAPE, OUT, TOP, DATA, NULL), SHARDPOINT_ESHAPE,
             "'y'");
    SP_OK(shardpoint_save_add_bytes(s, "b", DATA, 3));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count, index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, 2);
    SP_OK(shardpoint_reader_find(r, "x", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.chunk_count, 1);
    assert_int_equal(e.covered_numel, 10);
    shardpoint_reader_free(r);
    free(dir);
}

/* --- batched adds --------------------------------------------------------------------------- */

#define BATCH 300

/* A batch of many small tensors round-trips: whole tensors by the NULL shorthands, one chunk with
 * explicit offsets and sizes, one strided source; loaded back by a batch of requests (whole and
 * boxed). */
static void test_batched_add_round_trip(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "batch");
    static char names[BATCH][16];
    static int32_t values[BATCH][3], back[BATCH][3];
    uint64_t shape[1] = {3};
    shardpoint_tensor_chunk chunks[BATCH + 2];
    for (int i = 0; i < BATCH; ++i) {
        snprintf(names[i], sizeof names[i], "w.%d", i);
        for (int k = 0; k < 3; ++k) values[i][k] = i * 10 + k;
        chunks[i] = (shardpoint_tensor_chunk){names[i], SHARDPOINT_DTYPE_I32, 1, shape, NULL, NULL, values[i], NULL};
    }
    /* "x": rows 2..3 of a 4x5 tensor given by offsets and sizes; "t": the transpose of a 5x4
     * buffer, read through strides. */
    float transposed[20];
    for (int r = 0; r < 5; ++r)
        for (int c = 0; c < 4; ++c) transposed[r * 4 + c] = (float)(c * 5 + r);
    const int64_t strides[2] = {1, 4};
    chunks[BATCH] = (shardpoint_tensor_chunk){"x", SHARDPOINT_DTYPE_F32, 2, SHAPE, BOTTOM, TOP, DATA, NULL};
    chunks[BATCH + 1] = (shardpoint_tensor_chunk){"t", SHARDPOINT_DTYPE_F32, 2, SHAPE, NULL, NULL, transposed, strides};
    for (int i = 0; i < 20; ++i) DATA[i] = (float)i + 0.5f;

    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_ALLOW_PARTIAL; /* only the bottom of x */
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensors(s, chunks, BATCH + 2, sizeof chunks[0]));
    SP_OK(shardpoint_save_add_tensors(s, NULL, 0, sizeof chunks[0])); /* an empty batch is fine */
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, BATCH + 2);
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, NULL));
    shardpoint_tensor_request requests[BATCH + 2];
    memset(back, 0xEE, sizeof back);
    for (int i = 0; i < BATCH; ++i)
        requests[i] = (shardpoint_tensor_request){names[i], SHARDPOINT_DTYPE_I32, 1, NULL, NULL, back[i], NULL};
    float x[10] = {0}, t[20] = {0};
    requests[BATCH] = (shardpoint_tensor_request){"x", SHARDPOINT_DTYPE_F32, 2, BOTTOM, TOP, x, NULL};
    requests[BATCH + 1] = (shardpoint_tensor_request){"t", SHARDPOINT_DTYPE_F32, 2, NULL, NULL, t, NULL};
    SP_OK(shardpoint_load_add_tensors(l, requests, BATCH + 2, sizeof requests[0]));
    SP_OK(shardpoint_load_execute(l));
    assert_memory_equal(back, values, sizeof values);
    assert_memory_equal(x, DATA, sizeof x);
    for (int i = 0; i < 20; ++i) assert_true(t[i] == (float)i);
    shardpoint_load_free(l);
    shardpoint_reader_free(r);
    free(dir);
}

/* A refused chunk anywhere in a batch keeps none of the batch; the message names its position;
 * the save goes on and commits exactly what was accepted. */
static void test_batched_add_is_all_or_nothing(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "batch-fail");
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    uint64_t shape[1] = {3};
    int32_t v[3] = {1, 2, 3};
    shardpoint_tensor_chunk ok = {"a", SHARDPOINT_DTYPE_I32, 1, shape, NULL, NULL, v, NULL};
    shardpoint_tensor_chunk again = ok; /* the same chunk twice: an overlap */
    shardpoint_tensor_chunk unnamed = {NULL, SHARDPOINT_DTYPE_I32, 1, shape, NULL, NULL, v, NULL};
    shardpoint_tensor_chunk bad_dtype = {"c", 99, 1, shape, NULL, NULL, v, NULL};
    shardpoint_tensor_chunk b = {"b", SHARDPOINT_DTYPE_I32, 1, shape, NULL, NULL, v, NULL};

    shardpoint_tensor_chunk overlap[3] = {b, ok, again};
    SP_FAILS(shardpoint_save_add_tensors(s, overlap, 3, sizeof overlap[0]), SHARDPOINT_ECONFLICT, "item 2 of the batch");
    shardpoint_tensor_chunk null_name[3] = {ok, b, unnamed};
    SP_FAILS(shardpoint_save_add_tensors(s, null_name, 3, sizeof null_name[0]), SHARDPOINT_EINVAL, "item 2 of the batch");
    shardpoint_tensor_chunk dtype[2] = {ok, bad_dtype};
    SP_FAILS(shardpoint_save_add_tensors(s, dtype, 2, sizeof dtype[0]), SHARDPOINT_EINVAL, "item 1 of the batch");
    SP_FAILS(shardpoint_save_add_tensors(s, &ok, 1, sizeof ok - 1), SHARDPOINT_EINVAL, "struct size");
    SP_FAILS(shardpoint_save_add_tensors(s, NULL, 1, sizeof ok), SHARDPOINT_EINVAL, "chunks");
    /* Nothing of the refused batches was kept: "a" and "b" can be offered now, once. */
    shardpoint_tensor_chunk fine[2] = {ok, b};
    SP_OK(shardpoint_save_add_tensors(s, fine, 2, sizeof fine[0]));
    SP_FAILS(shardpoint_save_add_tensor(s, "a", SHARDPOINT_DTYPE_I32, 1, shape, ZEROS, shape, v, NULL),
             SHARDPOINT_ECONFLICT, "'a'");
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count, index;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, 2);
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, "a", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.chunk_count, 1);

    /* Loads: a refused request keeps none of its batch, so execute() writes nothing there. */
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, NULL));
    int32_t got_a[3] = {-1, -1, -1}, got_b[3] = {-1, -1, -1};
    shardpoint_tensor_request good = {"a", SHARDPOINT_DTYPE_I32, 1, NULL, NULL, got_a, NULL};
    shardpoint_tensor_request missing = {"nope", SHARDPOINT_DTYPE_I32, 1, NULL, NULL, got_b, NULL};
    shardpoint_tensor_request wrong_dtype = {"b", SHARDPOINT_DTYPE_F32, 1, NULL, NULL, got_b, NULL};
    shardpoint_tensor_request batch1[2] = {good, missing};
    SP_FAILS(shardpoint_load_add_tensors(l, batch1, 2, sizeof batch1[0]), SHARDPOINT_ENOTFOUND, "item 1 of the batch");
    shardpoint_tensor_request batch2[2] = {good, wrong_dtype};
    SP_FAILS(shardpoint_load_add_tensors(l, batch2, 2, sizeof batch2[0]), SHARDPOINT_EDTYPE, "item 1 of the batch");
    SP_FAILS(shardpoint_load_add_tensors(l, &good, 1, 4), SHARDPOINT_EINVAL, "struct size");
    SP_OK(shardpoint_load_execute(l));
    for (int k = 0; k < 3; ++k) assert_int_equal(got_a[k], -1);
    shardpoint_load_free(l);
    shardpoint_reader_free(r);

    /* With ALLOW_PARTIAL the missing entry is skipped, as one by one. */
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = SHARDPOINT_LOAD_ALLOW_PARTIAL;
    SP_OK(shardpoint_reader_open(&r, dir, &lo));
    SP_OK(shardpoint_load_new(&l, r, NULL));
    SP_OK(shardpoint_load_add_tensors(l, batch1, 2, sizeof batch1[0]));
    uint64_t skipped;
    SP_OK(shardpoint_load_skipped_count(l, &skipped));
    assert_int_equal(skipped, 1);
    SP_OK(shardpoint_load_execute(l));
    assert_memory_equal(got_a, v, sizeof v);
    for (int k = 0; k < 3; ++k) assert_int_equal(got_b[k], -1);
    shardpoint_load_free(l);
    shardpoint_reader_free(r);
    free(dir);
}

static void test_save_options_version(void **state) {
    fixture *f = *state;
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.version = 3;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "version");
    assert_null(s);
    SP_FAILS(shardpoint_save_options_init(&o, 99), SHARDPOINT_EINVAL, "version");
}

static void test_save_options_unknown_flags(void **state) {
    fixture *f = *state;
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = 0x80;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "flags");
    assert_null(s);
}

static void test_save_options_bad_alignment(void **state) {
    fixture *f = *state;
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.alignment = 3;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "power of two");
    o.alignment = 1ull << 31;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "alignment");
    o.alignment = (1ull << 32) + 4096; /* must not be truncated to a valid 32-bit value */
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "alignment");
    assert_null(s);
}

static void test_save_options_bad_compression(void **state) {
    fixture *f = *state;
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.compression_level = 10;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "compression");
    o.compression_level = -1;
    SP_FAILS(shardpoint_save_new(&s, f->dir, NULL, &o), SHARDPOINT_EINVAL, "compression");
    assert_null(s);
}

static void test_save_empty_path(void **state) {
    (void)state;
    shardpoint_save *s = NULL;
    SP_FAILS(shardpoint_save_new(&s, "", NULL, NULL), SHARDPOINT_EINVAL, "empty");
    assert_null(s);
}

static void test_load_options_version(void **state) {
    fixture *f = *state;
    shardpoint_reader *r = NULL;
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.version = 0;
    SP_FAILS(shardpoint_reader_open(&r, f->dir, &lo), SHARDPOINT_EINVAL, "version");
    assert_null(r);
    SP_FAILS(shardpoint_load_options_init(&lo, 99), SHARDPOINT_EINVAL, "version");
}

static void test_load_options_unknown_flags(void **state) {
    fixture *f = *state;
    shardpoint_reader *r = NULL;
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = 0x100;
    SP_FAILS(shardpoint_reader_open(&r, f->dir, &lo), SHARDPOINT_EINVAL, "flags");
    assert_null(r);
}

static int destroyed;
static int ok_gather(void *u, const void *send, uint64_t len, void *recv) {
    (void)u;
    memcpy(recv, send, len);
    return 0;
}
static int ok_broadcast(void *u, void *buf, uint64_t len) {
    (void)u, (void)buf, (void)len;
    return 0;
}
static void count_destroy(void *u) {
    (void)u;
    ++destroyed;
}

static void test_bad_callbacks(void **state) {
    (void)state;
    destroyed = 0;
    shardpoint_comm *c = NULL;
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.gather = ok_gather;
    cb.broadcast = ok_broadcast;
    cb.destroy = count_destroy;
    cb.rank = 2;
    cb.size = 2;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "rank 2");
    cb.rank = -1;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "rank -1");
    cb.rank = 0;
    cb.size = 0;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "rank 0");
    cb.size = 1;
    cb.gather = NULL;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "gather");
    cb.gather = ok_gather;
    cb.broadcast = NULL;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "broadcast");
    cb.broadcast = ok_broadcast;
    cb.version = 7;
    SP_FAILS(shardpoint_comm_new_callbacks(&c, &cb), SHARDPOINT_EINVAL, "version");
    assert_null(c);
    assert_int_equal(destroyed, 0); /* a rejected communicator never owned `user` */
    shardpoint_comm_callbacks fresh;
    SP_FAILS(shardpoint_comm_callbacks_init(&fresh, 99), SHARDPOINT_EINVAL, "version");
    cb.version = SHARDPOINT_COMM_CALLBACKS_VERSION;
    SP_OK(shardpoint_comm_new_callbacks(&c, &cb));
    int32_t rank = -1, size = -1;
    SP_OK(shardpoint_comm_rank(c, &rank));
    SP_OK(shardpoint_comm_size(c, &size));
    assert_int_equal(rank, 0);
    assert_int_equal(size, 1);
    shardpoint_comm_free(c);
    assert_int_equal(destroyed, 1);
}

static int failing_gather(void *u, const void *send, uint64_t len, void *recv) {
    (void)u, (void)send, (void)len, (void)recv;
    return -1;
}

static int fail_broadcast_after;
static int counting_broadcast(void *u, void *buf, uint64_t len) {
    (void)u, (void)buf, (void)len;
    return --fail_broadcast_after < 0 ? 5 : 0;
}

/* A transport failure surfaces as ECOMM; nothing is committed and none of the save's files stay. */
static void failing_comm_save(fixture *f, int (*gather)(void *, const void *, uint64_t, void *),
                              int (*broadcast)(void *, void *, uint64_t), const char *needle) {
    char *dir = path_join(f->tmp, "comm");
    float data[20] = {0};
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.gather = gather;
    cb.broadcast = broadcast;
    shardpoint_comm *c = NULL;
    SP_OK(shardpoint_comm_new_callbacks(&c, &cb));
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, c, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "t", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, data, NULL));
    SP_FAILS(shardpoint_save_commit(s), SHARDPOINT_ECOMM, needle);
    shardpoint_save_free(s);
    shardpoint_comm_free(c);
    char **names;
    size_t n;
    list_files(dir, &names, &n);
    for (size_t i = 0; i < n; ++i) fprintf(stderr, "left behind: '%s'\n", names[i]);
    free_names(names, n);
    assert_int_equal(n, 0);
    free(dir);
}

static void test_comm_gather_fails(void **state) { failing_comm_save(*state, failing_gather, ok_broadcast, "gather"); }

static void test_comm_first_broadcast_fails(void **state) {
    fail_broadcast_after = 0;
    failing_comm_save(*state, ok_gather, counting_broadcast, "broadcast");
}

/* The 4th broadcast of a commit is the first one after this rank wrote its data file. */
static void test_comm_fails_after_data_written(void **state) {
    fail_broadcast_after = 3;
    failing_comm_save(*state, ok_gather, counting_broadcast, "broadcast");
}

/* A failing load collective is ECOMM too, and the load can't be executed again. */
static void test_comm_fails_during_load(void **state) {
    fixture *f = *state;
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.gather = failing_gather;
    cb.broadcast = ok_broadcast;
    shardpoint_comm *c = NULL;
    SP_OK(shardpoint_comm_new_callbacks(&c, &cb));
    float dst[20];
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, f->reader, c));
    SP_OK(shardpoint_load_add_tensor(l, "t", T1.dtype, 2, ZEROS, T1.shape, dst, NULL));
    SP_FAILS(shardpoint_load_execute(l), SHARDPOINT_ECOMM, "gather");
    SP_FAILS(shardpoint_load_execute(l), SHARDPOINT_ESTATE, "executed");
    shardpoint_load_free(l);
    shardpoint_comm_free(c);
}

static void test_state_errors(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "state");
    float data[20] = {0}, dst[20];
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "t", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    SP_FAILS(shardpoint_save_commit(s), SHARDPOINT_ESTATE, "committed");
    SP_FAILS(shardpoint_save_add_tensor(s, "u", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, data, NULL),
             SHARDPOINT_ESTATE, "committed");
    SP_FAILS(shardpoint_save_add_bytes(s, "b", data, 1), SHARDPOINT_ESTATE, "committed");
    SP_FAILS(shardpoint_save_set_metadata(s, "k", "v"), SHARDPOINT_ESTATE, "committed");
    shardpoint_save_free(s);

    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, f->reader, NULL));
    SP_OK(shardpoint_load_add_tensor(l, "t", T1.dtype, 2, ZEROS, T1.shape, dst, NULL));
    SP_OK(shardpoint_load_execute(l));
    assert_int_equal(check_box(&T1, ZEROS, T1.shape, dst, NULL), 0);
    SP_FAILS(shardpoint_load_execute(l), SHARDPOINT_ESTATE, "executed");
    SP_FAILS(shardpoint_load_add_tensor(l, "t", T1.dtype, 2, ZEROS, T1.shape, dst, NULL), SHARDPOINT_ESTATE, "executed");
    SP_FAILS(shardpoint_load_add_bytes(l, "blob", dst, sizeof dst), SHARDPOINT_ESTATE, "executed");
    shardpoint_load_free(l);
    free(dir);
}

static void test_save_dir_under_a_file(void **state) {
    fixture *f = *state;
    char *file = path_join(f->tmp, "plain-file");
    assert_int_equal(write_file(file, "x", 1), 0);
    char *dir = path_join(file, "ckpt");
    float data[20] = {0};
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "t", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, data, NULL));
    SP_FAILS(shardpoint_save_commit(s), SHARDPOINT_EIO, "plain-file");
    shardpoint_save_free(s);
    free(dir), free(file);
}

static void test_uncommitted_save_writes_nothing(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "never");
    float data[20] = {0};
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "t", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, data, NULL));
    SP_OK(shardpoint_save_set_metadata(s, "k", "v"));
    shardpoint_save_free(s);
    assert_int_equal(file_exists(dir), 0);
    free(dir);
}

/* --- existing checkpoints --------------------------------------------------------------------- */

static void test_exists_without_overwrite(void **state) {
    fixture *f = *state;
    char *meta = path_join(f->dir, "shardpoint.meta");
    size_t before_len;
    unsigned char *before = read_file(meta, &before_len);
    char **names_before;
    size_t n_before;
    list_files(f->dir, &names_before, &n_before);

    const tdesc other = {"t", SHARDPOINT_DTYPE_F32, 2, {4, 5}, 77};
    SP_FAILS(save_whole(f->dir, &other, 1, NULL), SHARDPOINT_EEXISTS, "already exists");

    size_t after_len;
    unsigned char *after = read_file(meta, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    char **names_after;
    size_t n_after;
    list_files(f->dir, &names_after, &n_after);
    assert_int_equal(n_after, n_before); /* no stray data file */
    for (size_t i = 0; i < n_after; ++i) assert_string_equal(names_after[i], names_before[i]);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &T1, NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free_names(names_before, n_before), free_names(names_after, n_after);
    free(before), free(after), free(meta);
}

/* While an overwriting save runs, every rank callback looks at the directory: the checkpoint
 * there must always load completely, first as the old one, then (after the commit) as the new
 * one, never as a mix or not at all. */
typedef struct observer {
    const char *dir;
    const tdesc *old_t, *new_t;
    int calls, saw_old, saw_new, saw_broken, saw_new_after_old_violated;
    int saw_old_with_new_data; /* the new data file was on disk while the old checkpoint was live */
    char broken[512];
} observer;

static void observe(observer *o) {
    ++o->calls;
    shardpoint_reader *r = NULL;
    int rc = shardpoint_reader_open(&r, o->dir, NULL);
    int old_ok = 0, new_ok = 0;
    if (rc == 0) {
        old_ok = load_whole_mismatches(r, o->old_t, &rc) == 0;
        if (!old_ok) new_ok = load_whole_mismatches(r, o->new_t, &rc) == 0;
        if (!old_ok && !new_ok && rc == 0) snprintf(o->broken, sizeof o->broken, "content is neither old nor new");
        if (rc == 0) rc = shardpoint_reader_verify(r);
        shardpoint_reader_free(r);
    }
    if (rc != 0 || (!old_ok && !new_ok)) {
        ++o->saw_broken;
        if (rc) snprintf(o->broken, sizeof o->broken, "%s: %s", shardpoint_error_name(rc), shardpoint_last_error());
        return;
    }
    if (old_ok) {
        if (o->saw_new) o->saw_new_after_old_violated = 1;
        ++o->saw_old;
        int files = 0;
        data_files_total(o->dir, &files);
        if (files == 2) o->saw_old_with_new_data = 1;
    } else {
        ++o->saw_new;
    }
}

static int observing_gather(void *u, const void *send, uint64_t len, void *recv) {
    observe(u);
    memcpy(recv, send, len);
    return 0;
}

static int observing_broadcast(void *u, void *buf, uint64_t len) {
    (void)buf, (void)len;
    observe(u);
    return 0;
}

static void test_overwrite_is_atomic(void **state) {
    fixture *f = *state;
    const tdesc new_t = {"t", SHARDPOINT_DTYPE_F32, 2, {4, 5}, 2};
    int files = 0;
    data_files_total(f->dir, &files);
    assert_int_equal(files, 1);
    char **old_names;
    size_t n_old;
    list_files(f->dir, &old_names, &n_old);

    observer o = {f->dir, &T1, &new_t, 0, 0, 0, 0, 0, 0, ""};
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.user = &o;
    cb.gather = observing_gather;
    cb.broadcast = observing_broadcast;
    shardpoint_comm *c = NULL;
    SP_OK(shardpoint_comm_new_callbacks(&c, &cb));
    shardpoint_save_options opt = SHARDPOINT_SAVE_OPTIONS_INIT;
    opt.flags = SHARDPOINT_SAVE_OVERWRITE;
    void *data = make_box(&new_t, ZEROS, new_t.shape);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, f->dir, c, &opt));
    SP_OK(shardpoint_save_add_tensor(s, "t", new_t.dtype, 2, new_t.shape, ZEROS, new_t.shape, data, NULL));
    observe(&o); /* before the commit: still the old checkpoint */
    assert_int_equal(o.saw_old, 1);
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    shardpoint_comm_free(c);
    free(data);

    if (o.saw_broken) fail_msg("the checkpoint was unreadable during the save: %s", o.broken);
    assert_false(o.saw_new_after_old_violated);
    assert_true(o.calls > 4);
    assert_true(o.saw_old_with_new_data);
    assert_true(o.saw_new > 0); /* the commit happened before the last collective */

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &new_t, NULL), 0);
    shardpoint_reader_free(r);
    /* the old data file is gone, only the new one and the metadata remain */
    char **names;
    size_t n;
    list_files(f->dir, &names, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n_old; ++i)
        if (strncmp(old_names[i], "data-", 5) == 0) assert_string_not_equal(names[0], old_names[i]);
    free_names(names, n), free_names(old_names, n_old);
}

/* --- NULL and free ------------------------------------------------------------------------------ */

static void test_null_arguments(void **state) {
    fixture *f = *state;
    shardpoint_reader *r = f->reader;
    shardpoint_save *s = NULL;
    shardpoint_comm *c = NULL;
    shardpoint_load *l = NULL;
    float buf[20];
    uint64_t u64;
    int32_t i32;
    const char *str;
    shardpoint_storage_info info;
    shardpoint_entry_info e;
    shardpoint_chunk_info ci;
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.gather = ok_gather;
    cb.broadcast = ok_broadcast;

    SP_FAILS(shardpoint_dtype_from_name(NULL, &i32), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_dtype_from_name("f32", NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_new_single(NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_callbacks_init(NULL, SHARDPOINT_COMM_CALLBACKS_VERSION), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_new_callbacks(NULL, &cb), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_new_callbacks(&c, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_rank(NULL, &i32), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_size(NULL, &i32), SHARDPOINT_EINVAL, "NULL");
    SP_OK(shardpoint_comm_new_single(&c));
    SP_FAILS(shardpoint_comm_rank(c, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_comm_size(c, NULL), SHARDPOINT_EINVAL, "NULL");
    shardpoint_comm_free(c);

    SP_FAILS(shardpoint_save_options_init(NULL, SHARDPOINT_SAVE_OPTIONS_VERSION), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_new(NULL, f->dir, NULL, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_new(&s, NULL, NULL, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_add_tensor(NULL, "x", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, buf, NULL),
             SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_add_bytes(NULL, "x", buf, 1), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_set_metadata(NULL, "k", "v"), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_commit(NULL), SHARDPOINT_EINVAL, "NULL");
    char *dir = path_join(f->tmp, "nulls");
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_FAILS(shardpoint_save_add_tensor(s, NULL, SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, T1.shape, buf, NULL),
             SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, NULL, ZEROS, T1.shape, buf, NULL),
             SHARDPOINT_EINVAL, "global_shape");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, T1.shape, NULL, T1.shape, buf, NULL),
             SHARDPOINT_EINVAL, "chunk_offsets");
    SP_FAILS(shardpoint_save_add_tensor(s, "x", SHARDPOINT_DTYPE_F32, 2, T1.shape, ZEROS, NULL, buf, NULL),
             SHARDPOINT_EINVAL, "chunk_sizes");
    SP_FAILS(shardpoint_save_add_bytes(s, NULL, buf, 1), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_set_metadata(s, NULL, "v"), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_save_set_metadata(s, "k", NULL), SHARDPOINT_EINVAL, "NULL");
    shardpoint_save_free(s);
    free(dir);

    SP_FAILS(shardpoint_load_options_init(NULL, SHARDPOINT_LOAD_OPTIONS_VERSION), SHARDPOINT_EINVAL, "NULL");
    shardpoint_reader *nr = NULL;
    SP_FAILS(shardpoint_reader_open(NULL, f->dir, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_open(&nr, NULL, NULL), SHARDPOINT_EINVAL, "NULL");
    assert_null(nr);
    SP_FAILS(shardpoint_reader_storage_info(NULL, &info), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_storage_info(r, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_entry_count(NULL, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_entry_count(r, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_entry_info(NULL, 0, &e), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_entry_info(r, 0, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_find(NULL, "t", &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_find(r, NULL, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_find(r, "t", NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_chunk_info(NULL, 0, 0, &ci), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_chunk_info(r, 0, 0, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_count(NULL, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_count(r, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_at(NULL, 0, &str, &str), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_at(r, 0, NULL, &str), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_at(r, 0, &str, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_get(NULL, "k", &str), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_get(r, NULL, &str), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_metadata_get(r, "k", NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_verify(NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_read_tensor(NULL, "t", T1.dtype, 2, ZEROS, T1.shape, buf, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_read_tensor(r, NULL, T1.dtype, 2, ZEROS, T1.shape, buf, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_read_tensor(r, "t", T1.dtype, 2, NULL, T1.shape, buf, NULL), SHARDPOINT_EINVAL,
             "box_offsets");
    SP_FAILS(shardpoint_reader_read_tensor(r, "t", T1.dtype, 2, ZEROS, NULL, buf, NULL), SHARDPOINT_EINVAL, "box_sizes");
    SP_FAILS(shardpoint_reader_read_bytes(NULL, "blob", buf, sizeof buf, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_read_bytes(r, NULL, buf, sizeof buf, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_read_bytes(r, "blob", buf, sizeof buf, NULL), SHARDPOINT_EINVAL, "NULL");

    SP_FAILS(shardpoint_load_new(NULL, r, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_new(&l, NULL, NULL), SHARDPOINT_EINVAL, "NULL");
    assert_null(l);
    SP_FAILS(shardpoint_load_add_tensor(NULL, "t", T1.dtype, 2, ZEROS, T1.shape, buf, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_add_bytes(NULL, "blob", buf, sizeof buf), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_skipped_count(NULL, &u64), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_execute(NULL), SHARDPOINT_EINVAL, "NULL");
    SP_OK(shardpoint_load_new(&l, r, NULL));
    SP_FAILS(shardpoint_load_add_tensor(l, NULL, T1.dtype, 2, ZEROS, T1.shape, buf, NULL), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_add_bytes(l, NULL, buf, sizeof buf), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_load_skipped_count(l, NULL), SHARDPOINT_EINVAL, "NULL");
    shardpoint_load_free(l);
}

static void test_free_null_and_last_error(void **state) {
    (void)state;
    shardpoint_comm_free(NULL);
    shardpoint_save_free(NULL);
    shardpoint_reader_free(NULL);
    shardpoint_load_free(NULL);
    /* the last error is never NULL and survives successful calls and _free calls */
    fixture *f = *state;
    uint64_t u;
    SP_FAILS(shardpoint_reader_find(f->reader, "no.such.entry", &u), SHARDPOINT_ENOTFOUND, "no.such.entry");
    int32_t d;
    SP_OK(shardpoint_dtype_from_name("f32", &d));
    SP_OK(shardpoint_reader_entry_count(f->reader, &u));
    shardpoint_comm *c = NULL;
    SP_OK(shardpoint_comm_new_single(&c));
    shardpoint_comm_free(c);
    shardpoint_load_free(NULL);
    assert_int_equal(shardpoint_last_error_code(), SHARDPOINT_ENOTFOUND);
    assert_non_null(strstr(shardpoint_last_error(), "no.such.entry"));
}

typedef struct thread_error {
    int code_before, code_after_other;
    char message[256];
} thread_error;

static void *fail_in_thread(void *arg) {
    thread_error *t = arg;
    t->code_before = shardpoint_last_error_code(); /* a fresh thread has no error */
    snprintf(t->message, sizeof t->message, "%s", shardpoint_last_error());
    shardpoint_save_commit(NULL);
    t->code_after_other = shardpoint_last_error_code();
    return NULL;
}

/* The last error is per thread. */
static void test_last_error_is_per_thread(void **state) {
    fixture *f = *state;
    uint64_t u;
    SP_FAILS(shardpoint_reader_find(f->reader, "mine", &u), SHARDPOINT_ENOTFOUND, "mine");
    thread_error t;
    pthread_t id;
    assert_int_equal(pthread_create(&id, NULL, fail_in_thread, &t), 0);
    pthread_join(id, NULL);
    assert_int_equal(t.code_before, SHARDPOINT_OK);
    assert_string_equal(t.message, "");
    assert_int_equal(t.code_after_other, SHARDPOINT_EINVAL);
    assert_int_equal(shardpoint_last_error_code(), SHARDPOINT_ENOTFOUND); /* untouched here */
    assert_non_null(strstr(shardpoint_last_error(), "mine"));
}

static void test_file_info(void **state) {
    fixture *f = *state;
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(f->reader, &info));
    assert_int_equal(info.file_count, 1);
    shardpoint_file_info fi;
    SP_OK(shardpoint_reader_file_info(f->reader, 0, &fi));
    char *path = path_join(f->dir, fi.name);
    assert_int_equal(file_size(path), (long long)fi.size);
    assert_int_equal(fi.rank, 0);
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_chunk_info(f->reader, 0, 0, &ci));
    assert_string_equal(ci.file, fi.name);
    free(path);
    shardpoint_file_info same = fi;
    SP_FAILS(shardpoint_reader_file_info(f->reader, 1, &fi), SHARDPOINT_ERANGE, "1");
    assert_memory_equal(&fi, &same, sizeof fi);
    SP_FAILS(shardpoint_reader_file_info(NULL, 0, &fi), SHARDPOINT_EINVAL, "NULL");
    SP_FAILS(shardpoint_reader_file_info(f->reader, 0, NULL), SHARDPOINT_EINVAL, "NULL");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        T(test_wrong_dtype),
        T(test_box_out_of_range),
        T(test_wrong_ndim),
        T(test_unknown_name),
        T(test_uncovered_box),
        T(test_kind_mismatch),
        T(test_small_buffer),
        T(test_index_out_of_range),
        T(test_null_destination),
        T(test_offer_unknown_dtype),
        T(test_offer_too_many_dims),
        T(test_offer_chunk_outside_shape),
        T(test_offer_null_data),
        T(test_offer_empty_name),
        T(test_offer_overlapping_chunk),
        T(test_offer_redefinition),
        T(test_refused_offers_do_not_spoil_the_save),
        T(test_batched_add_round_trip),
        T(test_batched_add_is_all_or_nothing),
        T(test_save_options_version),
        T(test_save_options_unknown_flags),
        T(test_save_options_bad_alignment),
        T(test_save_options_bad_compression),
        T(test_save_empty_path),
        T(test_load_options_version),
        T(test_load_options_unknown_flags),
        T(test_bad_callbacks),
        T(test_comm_gather_fails),
        T(test_comm_first_broadcast_fails),
        T(test_comm_fails_after_data_written),
        T(test_comm_fails_during_load),
        T(test_state_errors),
        T(test_save_dir_under_a_file),
        T(test_uncommitted_save_writes_nothing),
        T(test_exists_without_overwrite),
        T(test_overwrite_is_atomic),
        T(test_null_arguments),
        T(test_free_null_and_last_error),
        T(test_last_error_is_per_thread),
        T(test_file_info),
    };
    return cmocka_run_group_tests_name("c_api", tests, NULL, NULL);
}
