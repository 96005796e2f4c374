/* Single-process round trips through the C ABI: every dtype, 0-d and empty tensors, 1 to 8
 * dimensions, strided sources and destinations, boxes across chunks and CRC blocks, many small
 * tensors, bytes entries, user metadata, storage info, compression, fsync, alignment, partial
 * loads and unverified loads. Every loaded byte is compared with the generator. */
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

static char *ckpt_path(void **state) { return path_join((const char *)*state, "ckpt"); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- dtypes ----------------------------------------------------------------------------------- */

static void test_dtype_table(void **state) {
    (void)state;
    static const uint32_t sizes[SHARDPOINT_DTYPE_COUNT] = {1, 1, 1, 2, 4, 8, 2, 4, 8, 2, 2, 4, 8, 8, 16, 1, 1};
    static const char *names[SHARDPOINT_DTYPE_COUNT] = {"bool", "u8",  "i8",  "i16",       "i32",        "i64",
                                                        "u16",  "u32", "u64", "f16",       "bf16",       "f32",
                                                        "f64",  "complex64", "complex128", "f8_e4m3fn", "f8_e5m2"};
    for (int32_t d = 0; d < SHARDPOINT_DTYPE_COUNT; ++d) {
        assert_int_equal(shardpoint_dtype_size(d), sizes[d]);
        assert_string_equal(shardpoint_dtype_name(d), names[d]);
        int32_t back = -1;
        SP_OK(shardpoint_dtype_from_name(names[d], &back));
        assert_int_equal(back, d);
    }
    assert_int_equal(shardpoint_dtype_size(SHARDPOINT_DTYPE_COUNT), 0);
    assert_int_equal(shardpoint_dtype_size(-1), 0);
    assert_null(shardpoint_dtype_name(SHARDPOINT_DTYPE_COUNT));
    assert_null(shardpoint_dtype_name(-1));
    int32_t untouched = 77;
    SP_FAILS(shardpoint_dtype_from_name("float32", &untouched), SHARDPOINT_EINVAL, "float32");
    assert_int_equal(untouched, 77);
    assert_int_equal(shardpoint_version_number(), SHARDPOINT_VERSION_NUMBER);
    assert_string_equal(shardpoint_version_string(), SHARDPOINT_VERSION_STRING);
    assert_string_equal(shardpoint_error_name(SHARDPOINT_ECHECKSUM), "SHARDPOINT_ECHECKSUM");
    assert_string_equal(shardpoint_error_name(12345), "SHARDPOINT_UNKNOWN");
}

static void test_every_dtype_round_trip(void **state) {
    char *dir = ckpt_path(state);
    tdesc ts[SHARDPOINT_DTYPE_COUNT];
    char names[SHARDPOINT_DTYPE_COUNT][32];
    for (int32_t d = 0; d < SHARDPOINT_DTYPE_COUNT; ++d) {
        snprintf(names[d], sizeof names[d], "dtype.%s", shardpoint_dtype_name(d));
        ts[d] = (tdesc){names[d], d, 2, {3, 5}, (uint32_t)d + 1};
    }
    SP_OK(save_whole(dir, ts, SHARDPOINT_DTYPE_COUNT, NULL));

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count = 0;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, SHARDPOINT_DTYPE_COUNT);
    const char *previous = "";
    for (uint64_t i = 0; i < count; ++i) {
        shardpoint_entry_info e;
        SP_OK(shardpoint_reader_entry_info(r, i, &e));
        assert_true(strcmp(previous, e.fqn) < 0); /* sorted by fqn */
        previous = e.fqn;
        int32_t d;
        SP_OK(shardpoint_dtype_from_name(e.fqn + strlen("dtype."), &d));
        assert_int_equal(e.kind, SHARDPOINT_ENTRY_TENSOR);
        assert_int_equal(e.dtype, d);
        assert_int_equal(e.ndim, 2);
        assert_int_equal(e.shape[0], 3);
        assert_int_equal(e.shape[1], 5);
        assert_int_equal(e.chunk_count, 1);
        assert_int_equal(e.numel, 15);
        assert_int_equal(e.covered_numel, 15);
        assert_int_equal(e.nbytes, 15 * shardpoint_dtype_size(d));
        assert_int_equal(e.stored_bytes, e.nbytes);
    }
    for (int32_t d = 0; d < SHARDPOINT_DTYPE_COUNT; ++d) {
        int rc;
        uint64_t bad = load_whole_mismatches(r, &ts[d], &rc);
        if (rc) fail_msg("%s: %s", ts[d].fqn, shardpoint_last_error());
        assert_int_equal(bad, 0);
    }
    /* bool elements are stored as they were given: 0 or 1 */
    unsigned char flags[15];
    SP_OK(shardpoint_reader_read_tensor(r, "dtype.bool", SHARDPOINT_DTYPE_BOOL, 2, ZEROS, ts[0].shape, flags, NULL));
    for (int i = 0; i < 15; ++i) assert_true(flags[i] <= 1);
    shardpoint_reader_free(r);
    free(dir);
}

/* --- 0-d, empty, 1..8 dims -------------------------------------------------------------------- */

static void test_scalars(void **state) {
    char *dir = ckpt_path(state);
    double step = 1234.5;
    int64_t count = -42;
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "scalar.f64", SHARDPOINT_DTYPE_F64, 0, NULL, NULL, NULL, &step, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "scalar.i64", SHARDPOINT_DTYPE_I64, 0, NULL, NULL, NULL, &count, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    SP_OK(shardpoint_reader_find(r, "scalar.f64", &index));
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.ndim, 0);
    assert_null(e.shape);
    assert_int_equal(e.numel, 1);
    assert_int_equal(e.nbytes, 8);
    assert_int_equal(e.covered_numel, 1);
    shardpoint_chunk_info c;
    SP_OK(shardpoint_reader_chunk_info(r, index, 0, &c));
    assert_null(c.offsets);
    assert_null(c.sizes);
    assert_int_equal(c.raw_length, 8);

    double got = 0;
    int64_t got_count = 0;
    SP_OK(shardpoint_reader_read_tensor(r, "scalar.f64", SHARDPOINT_DTYPE_F64, 0, NULL, NULL, &got, NULL));
    SP_OK(shardpoint_reader_read_tensor(r, "scalar.i64", SHARDPOINT_DTYPE_I64, 0, NULL, NULL, &got_count, NULL));
    assert_memory_equal(&got, &step, sizeof step);
    assert_int_equal(got_count, -42);
    shardpoint_reader_free(r);
    free(dir);
}

static void test_empty_tensors(void **state) {
    char *dir = ckpt_path(state);
    const uint64_t shape_a[2] = {0, 4}, shape_b[3] = {3, 0, 2};
    const tdesc full = {"nonempty", SHARDPOINT_DTYPE_I16, 2, {4, 5}, 9};
    void *data = make_box(&full, ZEROS, full.shape);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    /* data may be NULL for a chunk without elements */
    SP_OK(shardpoint_save_add_tensor(s, "empty.a", SHARDPOINT_DTYPE_F32, 2, shape_a, ZEROS, shape_a, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "empty.b", SHARDPOINT_DTYPE_COMPLEX128, 3,
                                     shape_b, ZEROS, shape_b, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "nonempty", full.dtype, 2, full.shape, ZEROS, full.shape, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, "empty.a", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.ndim, 2);
    assert_int_equal(e.shape[0], 0);
    assert_int_equal(e.shape[1], 4);
    assert_int_equal(e.numel, 0);
    assert_int_equal(e.nbytes, 0);
    SP_OK(shardpoint_reader_find(r, "empty.b", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.dtype, SHARDPOINT_DTYPE_COMPLEX128);
    assert_int_equal(e.numel, 0);

    /* Loading nothing succeeds, with or without a destination. */
    float sentinel = 7.0f;
    SP_OK(shardpoint_reader_read_tensor(r, "empty.a", SHARDPOINT_DTYPE_F32, 2, ZEROS, shape_a, NULL, NULL));
    SP_OK(shardpoint_reader_read_tensor(r, "empty.a", SHARDPOINT_DTYPE_F32, 2, ZEROS, shape_a, &sentinel, NULL));
    assert_true(sentinel == 7.0f);
    SP_OK(shardpoint_reader_read_tensor(r, "empty.b", SHARDPOINT_DTYPE_COMPLEX128, 3, ZEROS, shape_b, NULL, NULL));
    /* An empty box of a non-empty tensor is a valid request too. */
    const uint64_t off[2] = {2, 5}, none[2] = {2, 0};
    SP_OK(shardpoint_reader_read_tensor(r, "nonempty", full.dtype, 2, off, none, NULL, NULL));
    assert_int_equal(load_whole_mismatches(r, &full, NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(data);
    free(dir);
}

static void test_one_to_eight_dims(void **state) {
    char *dir = ckpt_path(state);
    static const uint64_t base[8] = {5, 3, 4, 2, 3, 2, 3, 2};
    tdesc ts[8];
    char names[8][16];
    void *bufs[16];
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    for (uint32_t nd = 1; nd <= 8; ++nd) {
        tdesc *t = &ts[nd - 1];
        snprintf(names[nd - 1], sizeof names[nd - 1], "nd.%u", nd);
        *t = (tdesc){names[nd - 1], (int32_t)(nd % 2 ? SHARDPOINT_DTYPE_F32 : SHARDPOINT_DTYPE_U16), nd, {0}, 100 + nd};
        for (uint32_t d = 0; d < nd; ++d) t->shape[d] = base[d];
        /* two chunks split along the last dimension */
        uint64_t off1[8] = {0}, sz0[8], sz1[8];
        for (uint32_t d = 0; d < nd; ++d) sz0[d] = sz1[d] = t->shape[d];
        sz0[nd - 1] = t->shape[nd - 1] / 2;
        sz1[nd - 1] = t->shape[nd - 1] - sz0[nd - 1];
        off1[nd - 1] = sz0[nd - 1];
        bufs[2 * (nd - 1)] = make_box(t, ZEROS, sz0);
        bufs[2 * (nd - 1) + 1] = make_box(t, off1, sz1);
        SP_OK(shardpoint_save_add_tensor(s, t->fqn, t->dtype, nd, t->shape, ZEROS, sz0, bufs[2 * (nd - 1)], NULL));
        SP_OK(shardpoint_save_add_tensor(s, t->fqn, t->dtype, nd, t->shape, off1, sz1, bufs[2 * (nd - 1) + 1], NULL));
    }
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    for (int i = 0; i < 16; ++i) free(bufs[i]);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    for (uint32_t nd = 1; nd <= 8; ++nd) {
        const tdesc *t = &ts[nd - 1];
        uint64_t index;
        shardpoint_entry_info e;
        SP_OK(shardpoint_reader_find(r, t->fqn, &index));
        SP_OK(shardpoint_reader_entry_info(r, index, &e));
        assert_int_equal(e.ndim, nd);
        assert_int_equal(e.chunk_count, 2);
        assert_memory_equal(e.shape, t->shape, nd * sizeof(uint64_t));
        assert_int_equal(load_whole_mismatches(r, t, NULL), 0);
        /* an inner box: offset 1, size - 1 in every dimension, across both chunks */
        uint64_t off[8], sz[8];
        for (uint32_t d = 0; d < nd; ++d) off[d] = 1, sz[d] = t->shape[d] - 1;
        uint64_t n = numel_of(nd, sz) * shardpoint_dtype_size(t->dtype);
        void *dst = malloc(n);
        SP_OK(shardpoint_reader_read_tensor(r, t->fqn, t->dtype, nd, off, sz, dst, NULL));
        assert_int_equal(check_box(t, off, sz, dst, NULL), 0);
        free(dst);
    }
    shardpoint_reader_free(r);
    free(dir);
}

/* --- strided memory --------------------------------------------------------------------------- */

enum { R = 6, C = 7 };

static void test_strided_sources(void **state) {
    char *dir = ckpt_path(state);
    const uint64_t shape[2] = {R, C};
    tdesc tt = {"src.transposed", SHARDPOINT_DTYPE_I32, 2, {R, C}, 1};
    tdesc tn = {"src.negative", SHARDPOINT_DTYPE_F16, 2, {R, C}, 2};
    tdesc tp = {"src.padded", SHARDPOINT_DTYPE_COMPLEX128, 2, {R, C}, 3};
    tdesc te = {"src.every_other", SHARDPOINT_DTYPE_U8, 2, {R, C}, 4};
    tdesc tm = {"src.mixed_sign", SHARDPOINT_DTYPE_F64, 2, {R, C}, 5};
    tdesc row = {"src.row", SHARDPOINT_DTYPE_I16, 1, {C}, 6};

    /* column-major: element (i, j) at i + j * R */
    const int64_t st_t[2] = {1, R};
    int32_t *mt = malloc(sizeof(int32_t) * R * C);
    fill_box(&tt, ZEROS, shape, mt, st_t);
    /* both axes reversed: the chunk's first element is the last one in memory */
    const int64_t st_n[2] = {-C, -1};
    uint16_t *mn = malloc(sizeof(uint16_t) * R * C);
    uint16_t *mn0 = mn + (R * C - 1);
    fill_box(&tn, ZEROS, shape, mn0, st_n);
    /* rows padded to 10 elements */
    const int64_t st_p[2] = {10, 1};
    unsigned char *mp = calloc(R * 10, 16);
    fill_box(&tp, ZEROS, shape, mp, st_p);
    /* every other column of a wider array */
    const int64_t st_e[2] = {2 * C, 2};
    unsigned char *me = calloc(R * 2 * C, 1);
    fill_box(&te, ZEROS, shape, me, st_e);
    /* rows reversed, columns forward: the first element starts the last row */
    const int64_t st_m[2] = {-C, 1};
    double *mm = malloc(sizeof(double) * R * C);
    double *mm0 = mm + (R - 1) * C;
    fill_box(&tm, ZEROS, shape, mm0, st_m);
    /* a zero stride repeats one row R times */
    const int64_t st_z[2] = {0, 1};
    void *mrow = make_box(&row, ZEROS, row.shape);

    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, tt.fqn, tt.dtype, 2, shape, ZEROS, shape, mt, st_t));
    SP_OK(shardpoint_save_add_tensor(s, tn.fqn, tn.dtype, 2, shape, ZEROS, shape, mn0, st_n));
    SP_OK(shardpoint_save_add_tensor(s, tp.fqn, tp.dtype, 2, shape, ZEROS, shape, mp, st_p));
    SP_OK(shardpoint_save_add_tensor(s, te.fqn, te.dtype, 2, shape, ZEROS, shape, me, st_e));
    SP_OK(shardpoint_save_add_tensor(s, tm.fqn, tm.dtype, 2, shape, ZEROS, shape, mm0, st_m));
    SP_OK(shardpoint_save_add_tensor(s, "src.broadcast", row.dtype, 2, shape, ZEROS, shape, mrow, st_z));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &tt, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &tn, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &tp, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &te, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &tm, NULL), 0);
    int16_t got[R][C];
    SP_OK(shardpoint_reader_read_tensor(r, "src.broadcast", row.dtype, 2, ZEROS, shape, got, NULL));
    for (int i = 0; i < R; ++i) assert_memory_equal(got[i], mrow, sizeof got[i]);
    shardpoint_reader_free(r);
    free(mt), free(mn), free(mp), free(me), free(mm), free(mrow);
    free(dir);
}

static void test_strided_destinations(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"dst.t", SHARDPOINT_DTYPE_BF16, 2, {R, C}, 11};
    SP_OK(save_whole(dir, &t, 1, NULL));
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    const size_t isz = 2;
    unsigned char *mem = calloc(4 * R * C, isz); /* room for every layout below */

    const int64_t transposed[2] = {1, R};
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, ZEROS, t.shape, mem, transposed));
    assert_int_equal(check_box(&t, ZEROS, t.shape, mem, transposed), 0);

    memset(mem, 0, 4 * R * C * isz);
    const int64_t reversed[2] = {-C, -1};
    unsigned char *last = mem + (R * C - 1) * isz;
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, ZEROS, t.shape, last, reversed));
    assert_int_equal(check_box(&t, ZEROS, t.shape, last, reversed), 0);

    /* padded rows: the padding must be left alone */
    memset(mem, 0xee, 4 * R * C * isz);
    const int64_t padded[2] = {C + 3, 1};
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, ZEROS, t.shape, mem, padded));
    assert_int_equal(check_box(&t, ZEROS, t.shape, mem, padded), 0);
    for (int i = 0; i < R; ++i)
        for (int j = C; j < C + 3; ++j) {
            assert_int_equal(mem[(i * (C + 3) + j) * isz], 0xee);
            assert_int_equal(mem[(i * (C + 3) + j) * isz + 1], 0xee);
        }

    /* a sub-box into every other element of a transposed layout */
    memset(mem, 0, 4 * R * C * isz);
    const uint64_t off[2] = {1, 2}, sz[2] = {4, 5};
    const int64_t sparse[2] = {2, 2 * 4};
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, off, sz, mem, sparse));
    assert_int_equal(check_box(&t, off, sz, mem, sparse), 0);

    /* the same through one load with several requests, also for NO_VERIFY (direct reads) */
    for (int pass = 0; pass < 2; ++pass) {
        shardpoint_reader *rr = NULL;
        shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
        lo.flags = pass ? SHARDPOINT_LOAD_NO_VERIFY : 0;
        SP_OK(shardpoint_reader_open(&rr, dir, &lo));
        unsigned char *a = calloc(R * C, isz), *b = calloc(R * C, isz), *c = calloc(R * C, isz);
        shardpoint_load *l = NULL;
        SP_OK(shardpoint_load_new(&l, rr, NULL));
        SP_OK(shardpoint_load_add_tensor(l, t.fqn, t.dtype, 2, ZEROS, t.shape, a, transposed));
        SP_OK(shardpoint_load_add_tensor(l, t.fqn, t.dtype, 2, ZEROS, t.shape, b + (R * C - 1) * isz, reversed));
        SP_OK(shardpoint_load_add_tensor(l, t.fqn, t.dtype, 2, off, sz, c, NULL));
        SP_OK(shardpoint_load_execute(l));
        shardpoint_load_free(l);
        assert_int_equal(check_box(&t, ZEROS, t.shape, a, transposed), 0);
        assert_int_equal(check_box(&t, ZEROS, t.shape, b + (R * C - 1) * isz, reversed), 0);
        assert_int_equal(check_box(&t, off, sz, c, NULL), 0);
        free(a), free(b), free(c);
        shardpoint_reader_free(rr);
    }
    free(mem);
    shardpoint_reader_free(r);
    free(dir);
}

/* Tensor memory needs no alignment, and bytes are stored exactly as given (bool included). */
static void test_unaligned_memory_and_raw_bool(void **state) {
    char *dir = ckpt_path(state);
    const tdesc t = {"f64", SHARDPOINT_DTYPE_F64, 2, {5, 3}, 13};
    unsigned char *src = malloc(15 * 8 + 1), *dst = calloc(15 * 8 + 3, 1);
    fill_box(&t, ZEROS, t.shape, src + 1, NULL); /* odd addresses for 8-byte elements */
    const int64_t transposed[2] = {1, 5};
    unsigned char *src_t = malloc(15 * 8 + 5);
    fill_box(&t, ZEROS, t.shape, src_t + 5, transposed);
    const uint64_t bool_shape[1] = {6};
    const unsigned char flags[6] = {0, 1, 2, 7, 0x80, 0xff};
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 2, t.shape, ZEROS, t.shape, src + 1, NULL));
    SP_OK(shardpoint_save_add_tensor(s, "f64.t", t.dtype, 2, t.shape, ZEROS, t.shape, src_t + 5, transposed));
    SP_OK(shardpoint_save_add_tensor(s, "flags", SHARDPOINT_DTYPE_BOOL, 1, bool_shape, ZEROS, bool_shape, flags, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, ZEROS, t.shape, dst + 3, NULL));
    assert_int_equal(check_box(&t, ZEROS, t.shape, dst + 3, NULL), 0);
    memset(dst, 0, 15 * 8 + 3);
    SP_OK(shardpoint_reader_read_tensor(r, "f64.t", t.dtype, 2, ZEROS, t.shape, dst + 3, transposed));
    assert_int_equal(check_box(&t, ZEROS, t.shape, dst + 3, transposed), 0);
    unsigned char got[6];
    SP_OK(shardpoint_reader_read_tensor(r, "flags", SHARDPOINT_DTYPE_BOOL, 1, ZEROS, bool_shape, got, NULL));
    assert_memory_equal(got, flags, sizeof flags);
    shardpoint_reader_free(r);
    free(src), free(src_t), free(dst);
    free(dir);
}

/* --- chunks and blocks ------------------------------------------------------------------------ */

static void test_box_spanning_chunks(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"grid", SHARDPOINT_DTYPE_U16, 2, {12, 10}, 21};
    void *bufs[6];
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 2; ++j) {
            const uint64_t off[2] = {4 * (uint64_t)i, 5 * (uint64_t)j}, sz[2] = {4, 5};
            bufs[i * 2 + j] = make_box(&t, off, sz);
            SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 2, t.shape, off, sz, bufs[i * 2 + j], NULL));
        }
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    for (int i = 0; i < 6; ++i) free(bufs[i]);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, t.fqn, &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.chunk_count, 6);
    assert_int_equal(e.covered_numel, 120);
    for (uint64_t c = 0; c < 6; ++c) {
        shardpoint_chunk_info ci;
        SP_OK(shardpoint_reader_chunk_info(r, index, c, &ci));
        assert_int_equal(ci.sizes[0], 4);
        assert_int_equal(ci.sizes[1], 5);
        assert_int_equal(ci.raw_length, 40);
        assert_int_equal(ci.transform, SHARDPOINT_TRANSFORM_NONE);
        assert_int_equal(ci.writer_rank, 0);
        assert_int_equal(ci.file_offset % 64, 0); /* 40 bytes: packed (FORMAT.md 4) */
    }
    const uint64_t off[2] = {2, 3}, sz[2] = {9, 6}; /* touches all 6 chunks */
    uint16_t dst[9 * 6];
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, off, sz, dst, NULL));
    assert_int_equal(check_box(&t, off, sz, dst, NULL), 0);
    const int64_t transposed[2] = {1, 9};
    memset(dst, 0, sizeof dst);
    SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, off, sz, dst, transposed));
    assert_int_equal(check_box(&t, off, sz, dst, transposed), 0);
    assert_int_equal(load_whole_mismatches(r, &t, NULL), 0);
    shardpoint_reader_free(r);
    free(dir);
}

/* Chunks larger than many 64 KiB CRC blocks, read in boxes that start and end inside blocks. */
static void test_boxes_across_crc_blocks(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"big", SHARDPOINT_DTYPE_F32, 2, {1024, 1000}, 31}; /* 4 000 000 bytes */
    const uint64_t sz0[2] = {300, 1000}, off1[2] = {300, 0}, sz1[2] = {724, 1000};
    void *a = make_box(&t, ZEROS, sz0), *b = make_box(&t, off1, sz1);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 2, t.shape, ZEROS, sz0, a, NULL));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 2, t.shape, off1, sz1, b, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    free(a), free(b);

    for (int pass = 0; pass < 2; ++pass) {
        shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
        lo.flags = pass ? SHARDPOINT_LOAD_NO_VERIFY : 0;
        shardpoint_reader *r = NULL;
        SP_OK(shardpoint_reader_open(&r, dir, &lo));
        /* whole rows, starting mid-block: the linear path */
        const uint64_t lo_off[2] = {101, 0}, lo_sz[2] = {800, 1000};
        float *dst = malloc(800 * 1000 * sizeof(float));
        SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, lo_off, lo_sz, dst, NULL));
        assert_int_equal(check_box(&t, lo_off, lo_sz, dst, NULL), 0);
        /* a column band: the strided path, across both chunks */
        const uint64_t st_off[2] = {100, 3}, st_sz[2] = {800, 994};
        SP_OK(shardpoint_reader_read_tensor(r, t.fqn, t.dtype, 2, st_off, st_sz, dst, NULL));
        assert_int_equal(check_box(&t, st_off, st_sz, dst, NULL), 0);
        free(dst);
        assert_int_equal(load_whole_mismatches(r, &t, NULL), 0);
        SP_OK(shardpoint_reader_verify(r));
        shardpoint_reader_free(r);
    }
    free(dir);
}

static void test_ten_thousand_small_tensors(void **state) {
    char *dir = ckpt_path(state);
    enum { N = 10000 };
    static char names[N][16];
    static float values[N][3];
    static float loaded[N][3];
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    const uint64_t shape[1] = {3};
    for (int i = 0; i < N; ++i) {
        snprintf(names[i], sizeof names[i], "t.%05d", i);
        tdesc t = {names[i], SHARDPOINT_DTYPE_F32, 1, {3}, (uint32_t)i};
        fill_box(&t, ZEROS, shape, values[i], NULL);
        SP_OK(shardpoint_save_add_tensor(s, names[i], SHARDPOINT_DTYPE_F32, 1, shape, ZEROS, shape, values[i], NULL));
    }
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count;
    SP_OK(shardpoint_reader_entry_count(r, &count));
    assert_int_equal(count, N);
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, NULL));
    for (int i = 0; i < N; ++i)
        SP_OK(shardpoint_load_add_tensor(l, names[i], SHARDPOINT_DTYPE_F32, 1, ZEROS, shape, loaded[i], NULL));
    SP_OK(shardpoint_load_execute(l));
    shardpoint_load_free(l);
    for (int i = 0; i < N; ++i) {
        tdesc t = {names[i], SHARDPOINT_DTYPE_F32, 1, {3}, (uint32_t)i};
        if (check_box(&t, ZEROS, shape, loaded[i], NULL) != 0) fail_msg("%s differs", names[i]);
    }
    uint64_t index;
    SP_OK(shardpoint_reader_find(r, "t.09999", &index));
    assert_int_equal(index, 9999);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(dir);
}

/* --- bytes, metadata, info -------------------------------------------------------------------- */

static void test_bytes_entries(void **state) {
    char *dir = ckpt_path(state);
    const uint64_t big_len = 3 * 1024 * 1024 + 17;
    unsigned char *big = malloc(big_len), small[5];
    gen_fill(big, big_len, 0, 41, 0);
    gen_fill(small, 5, 0, 42, 0);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_add_bytes(s, "blob.empty", NULL, 0));
    SP_OK(shardpoint_save_add_bytes(s, "blob.small", small, 5));
    SP_OK(shardpoint_save_add_bytes(s, "blob.big", big, big_len));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, "blob.big", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.kind, SHARDPOINT_ENTRY_BYTES);
    assert_int_equal(e.dtype, -1);
    assert_int_equal(e.ndim, 0);
    assert_null(e.shape);
    assert_int_equal(e.nbytes, big_len);
    assert_int_equal(e.numel, big_len);
    assert_int_equal(e.chunk_count, 1);
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_chunk_info(r, index, 0, &ci));
    assert_null(ci.offsets);
    assert_int_equal(ci.raw_length, big_len);
    SP_FAILS(shardpoint_reader_chunk_info(r, index, 1, &ci), SHARDPOINT_ERANGE, "1");

    unsigned char *got = malloc(big_len + 8);
    memset(got, 0x5a, big_len + 8);
    uint64_t len = 0;
    SP_OK(shardpoint_reader_read_bytes(r, "blob.big", got, big_len + 8, &len));
    assert_int_equal(len, big_len);
    assert_int_equal(gen_check(got, big_len, 0, 41, 0), 0);
    for (int i = 0; i < 8; ++i) assert_int_equal(got[big_len + i], 0x5a); /* beyond the blob: untouched */
    SP_OK(shardpoint_reader_read_bytes(r, "blob.small", got, 5, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(got, small, 5);
    len = 99;
    SP_OK(shardpoint_reader_read_bytes(r, "blob.empty", NULL, 0, &len));
    assert_int_equal(len, 0);
    SP_OK(shardpoint_reader_find(r, "blob.empty", &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    assert_int_equal(e.nbytes, 0);

    /* several blobs in one load */
    unsigned char *again = malloc(big_len);
    unsigned char small_again[5];
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, NULL));
    SP_OK(shardpoint_load_add_bytes(l, "blob.big", again, big_len));
    SP_OK(shardpoint_load_add_bytes(l, "blob.small", small_again, 5));
    SP_OK(shardpoint_load_add_bytes(l, "blob.empty", NULL, 0));
    SP_OK(shardpoint_load_execute(l));
    shardpoint_load_free(l);
    assert_memory_equal(again, big, big_len);
    assert_memory_equal(small_again, small, 5);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(big), free(got), free(again);
    free(dir);
}

static void test_user_metadata(void **state) {
    char *dir = ckpt_path(state);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, NULL));
    SP_OK(shardpoint_save_set_metadata(s, "step", "1"));
    SP_OK(shardpoint_save_set_metadata(s, "optimizer", "adamw"));
    SP_OK(shardpoint_save_set_metadata(s, "empty", ""));
    SP_OK(shardpoint_save_set_metadata(s, "ключ", "значение ✓"));
    SP_OK(shardpoint_save_set_metadata(s, "step", "1000")); /* the last value wins */
    SP_OK(shardpoint_save_add_bytes(s, "x", "abc", 3));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t count;
    SP_OK(shardpoint_reader_metadata_count(r, &count));
    assert_int_equal(count, 4);
    const char *v = NULL;
    SP_OK(shardpoint_reader_metadata_get(r, "step", &v));
    assert_string_equal(v, "1000");
    SP_OK(shardpoint_reader_metadata_get(r, "optimizer", &v));
    assert_string_equal(v, "adamw");
    SP_OK(shardpoint_reader_metadata_get(r, "empty", &v));
    assert_string_equal(v, "");
    SP_OK(shardpoint_reader_metadata_get(r, "ключ", &v));
    assert_string_equal(v, "значение ✓");
    int seen = 0;
    for (uint64_t i = 0; i < count; ++i) {
        const char *k = NULL, *val = NULL;
        SP_OK(shardpoint_reader_metadata_at(r, i, &k, &val));
        const char *via_get = NULL;
        SP_OK(shardpoint_reader_metadata_get(r, k, &via_get));
        assert_string_equal(val, via_get);
        seen += strcmp(k, "step") == 0;
    }
    assert_int_equal(seen, 1);
    const char *untouched = "same";
    SP_FAILS(shardpoint_reader_metadata_get(r, "nope", &untouched), SHARDPOINT_ENOTFOUND, "nope");
    assert_string_equal(untouched, "same");
    const char *k2 = NULL;
    SP_FAILS(shardpoint_reader_metadata_at(r, 4, &k2, &v), SHARDPOINT_ERANGE, "4");
    shardpoint_reader_free(r);
    free(dir);
}

static void test_storage_info(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"w", SHARDPOINT_DTYPE_I8, 1, {100}, 5};
    int64_t before = now_ns();
    SP_OK(save_whole(dir, &t, 1, NULL));
    int64_t after = now_ns();
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(r, &info));
    assert_string_equal(info.checkpoint_id, "ckpt"); /* default: the directory's name */
    assert_int_equal(strlen(info.save_id), 32);
    assert_int_equal(strspn(info.save_id, "0123456789abcdef"), 32);
    assert_string_equal(info.library_version, shardpoint_version_string());
    assert_true(info.created_unix_ns >= before && info.created_unix_ns <= after);
    assert_int_equal(info.world_size, 1);
    assert_int_equal(info.format_major, SHARDPOINT_FORMAT_MAJOR);
    assert_int_equal(info.alignment, 4096);
    assert_int_equal(info.file_count, 1);
    assert_int_equal(info.total_stored_bytes, 100);
    /* the data file is named after the save id and the rank */
    char expected[128];
    snprintf(expected, sizeof expected, "data-%s-r00000.bin", info.save_id);
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_chunk_info(r, 0, 0, &ci));
    assert_string_equal(ci.file, expected);
    char *data = path_join(dir, expected);
    assert_true(file_exists(data));
    free(data);
    char saved_id[33];
    strcpy(saved_id, info.save_id);
    shardpoint_reader_free(r);

    /* an explicit checkpoint id, and a new save id for a new save */
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    o.checkpoint_id = "run-7/step-100";
    SP_OK(save_whole(dir, &t, 1, &o));
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    SP_OK(shardpoint_reader_storage_info(r, &info));
    assert_string_equal(info.checkpoint_id, "run-7/step-100");
    assert_string_not_equal(info.save_id, saved_id);
    shardpoint_reader_free(r);
    free(dir);
}

/* --- options ---------------------------------------------------------------------------------- */

static void compression_round_trip(void **state, int level) {
    char *dir = ckpt_path(state);
    tdesc big = {"c.big", SHARDPOINT_DTYPE_F32, 2, {512, 600}, 51};
    tdesc tr = {"c.transposed", SHARDPOINT_DTYPE_I64, 2, {R, C}, 52};
    tdesc sc = {"c.scalar", SHARDPOINT_DTYPE_F64, 0, {0}, 53};
    const uint64_t sz0[2] = {200, 600}, off1[2] = {200, 0}, sz1[2] = {312, 600};
    void *b0 = make_box(&big, ZEROS, sz0), *b1 = make_box(&big, off1, sz1);
    const int64_t st_t[2] = {1, R};
    int64_t mt[R * C];
    fill_box(&tr, ZEROS, tr.shape, mt, st_t);
    void *scalar = make_box(&sc, ZEROS, NULL);
    unsigned char blob[5000];
    gen_fill(blob, sizeof blob, 0, 54, 0);

    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.compression_level = level;
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, big.fqn, big.dtype, 2, big.shape, ZEROS, sz0, b0, NULL));
    SP_OK(shardpoint_save_add_tensor(s, big.fqn, big.dtype, 2, big.shape, off1, sz1, b1, NULL));
    SP_OK(shardpoint_save_add_tensor(s, tr.fqn, tr.dtype, 2, tr.shape, ZEROS, tr.shape, mt, st_t));
    SP_OK(shardpoint_save_add_tensor(s, sc.fqn, sc.dtype, 0, NULL, NULL, NULL, scalar, NULL));
    SP_OK(shardpoint_save_add_bytes(s, "c.blob", blob, sizeof blob));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    free(b0), free(b1), free(scalar);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(r, big.fqn, &index));
    SP_OK(shardpoint_reader_entry_info(r, index, &e));
    /* the generator repeats every 256 bytes within 2 KiB: deflate must shrink it a lot */
    assert_true(e.stored_bytes * 4 < e.nbytes);
    for (uint64_t c = 0; c < e.chunk_count; ++c) {
        shardpoint_chunk_info ci;
        SP_OK(shardpoint_reader_chunk_info(r, index, c, &ci));
        assert_int_equal(ci.transform, SHARDPOINT_TRANSFORM_DEFLATE);
        assert_true(ci.stored_length < ci.raw_length);
    }
    assert_int_equal(load_whole_mismatches(r, &big, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &tr, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &sc, NULL), 0);
    /* a box across both compressed chunks into a strided destination */
    const uint64_t off[2] = {150, 7}, sz[2] = {100, 50};
    const int64_t transposed[2] = {1, 100};
    float *dst = calloc(100 * 50, sizeof(float));
    SP_OK(shardpoint_reader_read_tensor(r, big.fqn, big.dtype, 2, off, sz, dst, transposed));
    assert_int_equal(check_box(&big, off, sz, dst, transposed), 0);
    free(dst);
    unsigned char got[5000];
    uint64_t len;
    SP_OK(shardpoint_reader_read_bytes(r, "c.blob", got, sizeof got, &len));
    assert_memory_equal(got, blob, sizeof blob);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(dir);
}

static void test_compression_level_1(void **state) { compression_round_trip(state, 1); }
static void test_compression_level_9(void **state) { compression_round_trip(state, 9); }

/* Block compression through the C ABI: every codec and the shuffle round-trip, partial boxes
 * included; block codecs write format 2, the rest stays format 1; bad combinations are refused. */
static void block_codec_round_trip(void **state, uint32_t codec, uint32_t filters) {
    char *dir = ckpt_path(state);
    tdesc big = {"b.big", SHARDPOINT_DTYPE_F32, 2, {512, 600}, 61};
    tdesc half = {"b.half", SHARDPOINT_DTYPE_BF16, 2, {300, 77}, 62};
    const uint64_t sz0[2] = {200, 600}, off1[2] = {200, 0}, sz1[2] = {312, 600};
    void *b0 = make_box(&big, ZEROS, sz0), *b1 = make_box(&big, off1, sz1), *h = make_box(&half, ZEROS, half.shape);
    shardpoint_save_options o;
    SP_OK(shardpoint_save_options_init(&o, SHARDPOINT_SAVE_OPTIONS_VERSION));
    o.codec = codec;
    o.filters = filters;
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, big.fqn, big.dtype, 2, big.shape, ZEROS, sz0, b0, NULL));
    SP_OK(shardpoint_save_add_tensor(s, big.fqn, big.dtype, 2, big.shape, off1, sz1, b1, NULL));
    SP_OK(shardpoint_save_add_tensor(s, half.fqn, half.dtype, 2, half.shape, ZEROS, half.shape, h, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    free(b0), free(b1), free(h);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(r, &info));
    const int blocks = codec == SHARDPOINT_CODEC_ZLIB || codec == SHARDPOINT_CODEC_ZSTD;
    assert_int_equal(info.format_major, blocks ? 2 : SHARDPOINT_FORMAT_MAJOR);
    uint64_t index;
    SP_OK(shardpoint_reader_find(r, big.fqn, &index));
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_chunk_info(r, index, 0, &ci));
    const int32_t want = codec == SHARDPOINT_CODEC_ZLIB   ? SHARDPOINT_TRANSFORM_ZLIB_BLOCKS
                         : codec == SHARDPOINT_CODEC_ZSTD ? SHARDPOINT_TRANSFORM_ZSTD_BLOCKS
                                                          : SHARDPOINT_TRANSFORM_DEFLATE;
    assert_int_equal(ci.transform, want);
    assert_int_equal(ci.shuffle_width, (filters & SHARDPOINT_FILTER_SHUFFLE) ? 4 : 0);
    assert_true(ci.stored_length < ci.raw_length); /* the generator's bytes repeat: they compress */
    assert_int_equal(load_whole_mismatches(r, &big, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &half, NULL), 0);
    const uint64_t off[2] = {150, 33}, sz[2] = {100, 50}; /* across both chunks, strided out */
    const int64_t transposed[2] = {1, 100};
    float *dst = calloc(100 * 50, sizeof(float));
    SP_OK(shardpoint_reader_read_tensor(r, big.fqn, big.dtype, 2, off, sz, dst, transposed));
    assert_int_equal(check_box(&big, off, sz, dst, transposed), 0);
    free(dst);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(dir);
}

static void test_codec_zstd_shuffled(void **state) { block_codec_round_trip(state, SHARDPOINT_CODEC_ZSTD, SHARDPOINT_FILTER_SHUFFLE); }
static void test_codec_zlib(void **state) { block_codec_round_trip(state, SHARDPOINT_CODEC_ZLIB, 0); }
static void test_codec_deflate_stream(void **state) { block_codec_round_trip(state, SHARDPOINT_CODEC_DEFLATE_STREAM, 0); }

static void test_codec_option_errors(void **state) {
    char *dir = ckpt_path(state);
    shardpoint_save *s = NULL;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.codec = 9;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "codec");
    o.codec = SHARDPOINT_CODEC_DEFAULT;
    o.filters = SHARDPOINT_FILTER_SHUFFLE;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "shuffle");
    o.filters = 0x80;
    o.codec = SHARDPOINT_CODEC_ZSTD;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "filters");
    o.filters = 0;
    o.compression_level = 20;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "level 20");
    o.codec = SHARDPOINT_CODEC_ZLIB;
    o.compression_level = 10;
    SP_FAILS(shardpoint_save_new(&s, dir, NULL, &o), SHARDPOINT_EINVAL, "level 10");
    /* A version 1 struct ends before codec: whatever follows it is not read. */
    shardpoint_save_options v1;
    memset(&v1, 0xff, sizeof v1);
    SP_OK(shardpoint_save_options_init(&v1, 1));
    assert_int_equal(v1.version, 1);
    assert_int_equal(v1.compression_level, 0);
    assert_int_equal(v1.codec, 0xffffffffu); /* untouched: not part of a version 1 struct */
    v1.compression_level = 3;
    const tdesc t = {"v1.t", SHARDPOINT_DTYPE_I32, 1, {64}, 63};
    void *data = make_box(&t, ZEROS, t.shape);
    SP_OK(shardpoint_save_new(&s, dir, NULL, &v1));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 1, t.shape, ZEROS, t.shape, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    free(data);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_chunk_info(r, 0, 0, &ci));
    assert_int_equal(ci.transform, SHARDPOINT_TRANSFORM_DEFLATE);
    assert_int_equal(load_whole_mismatches(r, &t, NULL), 0);
    shardpoint_reader_free(r);
    free(dir);
}

/* Entries without bytes in a compressed checkpoint: they load, and verify must accept them. */
static void test_compression_with_empty_entries(void **state) {
    char *dir = ckpt_path(state);
    const uint64_t empty_shape[2] = {0, 4};
    const tdesc t = {"c.nonempty", SHARDPOINT_DTYPE_I32, 1, {64}, 55};
    void *data = make_box(&t, ZEROS, t.shape);
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.compression_level = 6;
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, NULL, &o));
    SP_OK(shardpoint_save_add_tensor(s, "c.empty", SHARDPOINT_DTYPE_F32, 2, empty_shape, ZEROS, empty_shape, NULL, NULL));
    SP_OK(shardpoint_save_add_bytes(s, "c.empty_blob", NULL, 0));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 1, t.shape, ZEROS, t.shape, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    free(data);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    SP_OK(shardpoint_reader_read_tensor(r, "c.empty", SHARDPOINT_DTYPE_F32, 2, ZEROS, empty_shape, NULL, NULL));
    uint64_t len = 1;
    SP_OK(shardpoint_reader_read_bytes(r, "c.empty_blob", NULL, 0, &len));
    assert_int_equal(len, 0);
    assert_int_equal(load_whole_mismatches(r, &t, NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(dir);
}

static void test_fsync_flag(void **state) {
    char *dir = ckpt_path(state);
    tdesc ts[2] = {{"a", SHARDPOINT_DTYPE_U32, 2, {33, 17}, 61}, {"b", SHARDPOINT_DTYPE_I8, 1, {9}, 62}};
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = SHARDPOINT_SAVE_FSYNC;
    SP_OK(save_whole(dir, ts, 2, &o));
    o.flags = SHARDPOINT_SAVE_FSYNC | SHARDPOINT_SAVE_OVERWRITE;
    o.compression_level = 3;
    SP_OK(save_whole(dir, ts, 2, &o));
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &ts[0], NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &ts[1], NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    /* no temporary metadata file is left behind */
    char **names;
    size_t n;
    list_files(dir, &names, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[1], "shardpoint.meta");
    free_names(names, n);
    free(dir);
}

static void test_alignment_option(void **state) {
    char *dir = ckpt_path(state);
    tdesc ts[3] = {{"a", SHARDPOINT_DTYPE_U8, 1, {1001}, 71},
                   {"b", SHARDPOINT_DTYPE_F64, 2, {3, 3}, 72},
                   {"c", SHARDPOINT_DTYPE_I16, 1, {77}, 73}};
    const uint64_t raw_total = 1001 + 72 + 154;

    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.alignment = 65536;
    SP_OK(save_whole(dir, ts, 3, &o));
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(r, &info));
    assert_int_equal(info.alignment, 65536);
    assert_int_equal(info.total_stored_bytes, raw_total);
    for (uint64_t i = 0; i < 3; ++i) {
        shardpoint_chunk_info ci;
        SP_OK(shardpoint_reader_chunk_info(r, i, 0, &ci));
        /* every extent here is shorter than 65536: packed at 64 (FORMAT.md 4) */
        assert_int_equal(ci.file_offset % 64, 0);
        assert_int_equal(load_whole_mismatches(r, &ts[i], NULL), 0);
    }
    shardpoint_reader_free(r);

    /* alignment 1: extents are packed, the data file holds exactly the raw bytes */
    o.alignment = 1;
    o.flags = SHARDPOINT_SAVE_OVERWRITE;
    SP_OK(save_whole(dir, ts, 3, &o));
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    SP_OK(shardpoint_reader_storage_info(r, &info));
    assert_int_equal(info.alignment, 1);
    int files = 0;
    assert_int_equal(data_files_total(dir, &files), (long long)raw_total);
    assert_int_equal(files, 1); /* and the previous save's file is gone */
    for (uint64_t i = 0; i < 3; ++i) assert_int_equal(load_whole_mismatches(r, &ts[i], NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(dir);
}

static void test_io_threads_option(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"big", SHARDPOINT_DTYPE_U8, 1, {20u << 20}, 81}; /* several 8 MiB write pieces */
    for (uint32_t threads = 1; threads <= 4; threads += 3) {
        shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
        o.io_threads = threads;
        o.flags = SHARDPOINT_SAVE_OVERWRITE;
        SP_OK(save_whole(dir, &t, 1, &o));
        shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
        lo.io_threads = threads;
        shardpoint_reader *r = NULL;
        SP_OK(shardpoint_reader_open(&r, dir, &lo));
        assert_int_equal(load_whole_mismatches(r, &t, NULL), 0);
        SP_OK(shardpoint_reader_verify(r));
        shardpoint_reader_free(r);
    }
    free(dir);
}

static void test_allow_partial(void **state) {
    char *dir = ckpt_path(state);
    tdesc t = {"present", SHARDPOINT_DTYPE_I32, 1, {10}, 91};
    SP_OK(save_whole(dir, &t, 1, NULL));
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = SHARDPOINT_LOAD_ALLOW_PARTIAL;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, &lo));
    int32_t got[10], missing[4] = {1, 2, 3, 4};
    unsigned char blob[3] = {9, 9, 9};
    const uint64_t four[1] = {4};
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, NULL));
    SP_OK(shardpoint_load_add_tensor(l, "present", t.dtype, 1, ZEROS, t.shape, got, NULL));
    SP_OK(shardpoint_load_add_tensor(l, "absent.tensor", SHARDPOINT_DTYPE_I32, 1, ZEROS, four, missing, NULL));
    SP_OK(shardpoint_load_add_bytes(l, "absent.blob", blob, sizeof blob));
    uint64_t skipped = 0;
    SP_OK(shardpoint_load_skipped_count(l, &skipped));
    assert_int_equal(skipped, 2);
    SP_OK(shardpoint_load_execute(l));
    shardpoint_load_free(l);
    assert_int_equal(check_box(&t, ZEROS, t.shape, got, NULL), 0);
    const int32_t same[4] = {1, 2, 3, 4};
    assert_memory_equal(missing, same, sizeof same); /* skipped destinations are untouched */
    assert_int_equal(blob[0], 9);
    uint64_t len = 77;
    SP_OK(shardpoint_reader_read_bytes(r, "absent.blob", blob, sizeof blob, &len));
    assert_int_equal(len, 0);
    /* a present entry is still checked: a wrong dtype is not "missing" */
    SP_FAILS(shardpoint_reader_read_tensor(r, "present", SHARDPOINT_DTYPE_F32, 1, ZEROS, t.shape, got, NULL),
             SHARDPOINT_EDTYPE, "present");
    shardpoint_reader_free(r);
    free(dir);
}

static void test_no_verify_clean_data(void **state) {
    char *dir = ckpt_path(state);
    tdesc ts[2] = {{"a", SHARDPOINT_DTYPE_F16, 3, {4, 5, 6}, 95}, {"b", SHARDPOINT_DTYPE_BOOL, 1, {33}, 96}};
    SP_OK(save_whole(dir, ts, 2, NULL));
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = SHARDPOINT_LOAD_NO_VERIFY | SHARDPOINT_LOAD_ALLOW_PARTIAL;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, &lo));
    assert_int_equal(load_whole_mismatches(r, &ts[0], NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &ts[1], NULL), 0);
    const uint64_t off[3] = {1, 1, 1}, sz[3] = {2, 3, 4};
    uint16_t dst[24];
    SP_OK(shardpoint_reader_read_tensor(r, "a", ts[0].dtype, 3, off, sz, dst, NULL));
    assert_int_equal(check_box(&ts[0], off, sz, dst, NULL), 0);
    shardpoint_reader_free(r);
    free(dir);
}

static void test_comm_single_and_callbacks_init(void **state) {
    char *dir = ckpt_path(state);
    shardpoint_comm *c = NULL;
    SP_OK(shardpoint_comm_new_single(&c));
    int32_t rank = -1, size = -1;
    SP_OK(shardpoint_comm_rank(c, &rank));
    SP_OK(shardpoint_comm_size(c, &size));
    assert_int_equal(rank, 0);
    assert_int_equal(size, 1);
    /* a save and a load over an explicit single-process communicator */
    tdesc t = {"x", SHARDPOINT_DTYPE_U64, 2, {3, 4}, 97};
    void *data = make_box(&t, ZEROS, t.shape);
    shardpoint_save *s = NULL;
    SP_OK(shardpoint_save_new(&s, dir, c, NULL));
    SP_OK(shardpoint_save_add_tensor(s, t.fqn, t.dtype, 2, t.shape, ZEROS, t.shape, data, NULL));
    SP_OK(shardpoint_save_commit(s));
    shardpoint_save_free(s);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t got[12];
    shardpoint_load *l = NULL;
    SP_OK(shardpoint_load_new(&l, r, c));
    SP_OK(shardpoint_load_add_tensor(l, t.fqn, t.dtype, 2, ZEROS, t.shape, got, NULL));
    SP_OK(shardpoint_load_execute(l));
    shardpoint_load_free(l);
    assert_int_equal(check_box(&t, ZEROS, t.shape, got, NULL), 0);
    shardpoint_reader_free(r);
    shardpoint_comm_free(c);
    free(data);

    shardpoint_comm_callbacks cb;
    memset(&cb, 0xab, sizeof cb);
    SP_OK(shardpoint_comm_callbacks_init(&cb, SHARDPOINT_COMM_CALLBACKS_VERSION));
    assert_int_equal(cb.version, SHARDPOINT_COMM_CALLBACKS_VERSION);
    assert_int_equal(cb.rank, 0);
    assert_int_equal(cb.size, 1);
    assert_null(cb.gather);
    assert_null(cb.broadcast);
    assert_null(cb.destroy);
    shardpoint_save_options so;
    SP_OK(shardpoint_save_options_init(&so, SHARDPOINT_SAVE_OPTIONS_VERSION));
    assert_int_equal(so.version, SHARDPOINT_SAVE_OPTIONS_VERSION);
    assert_int_equal(so.flags, 0);
    assert_int_equal(so.compression_level, 0);
    assert_int_equal(so.alignment, 0);
    assert_null(so.checkpoint_id);
    shardpoint_load_options lo;
    SP_OK(shardpoint_load_options_init(&lo, SHARDPOINT_LOAD_OPTIONS_VERSION));
    assert_int_equal(lo.version, SHARDPOINT_LOAD_OPTIONS_VERSION);
    assert_int_equal(lo.flags, 0);
    free(dir);
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test_setup_teardown(test_every_dtype_round_trip, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_scalars, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_empty_tensors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_one_to_eight_dims, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_strided_sources, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_strided_destinations, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_unaligned_memory_and_raw_bool, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_box_spanning_chunks, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_boxes_across_crc_blocks, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_ten_thousand_small_tensors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_bytes_entries, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_user_metadata, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_storage_info, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_compression_level_1, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_compression_level_9, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_compression_with_empty_entries, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_codec_zstd_shuffled, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_codec_zlib, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_codec_deflate_stream, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_codec_option_errors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_fsync_flag, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_alignment_option, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_io_threads_option, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_allow_partial, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_no_verify_clean_data, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_comm_single_and_callbacks_init, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests_name("c_roundtrip", tests, NULL, NULL);
}
