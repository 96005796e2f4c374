/* Conversion to and from safetensors: round trips of every mappable dtype (0-d and empty tensors
 * included) checked byte by byte in the file itself, checkpoints sharded by several ranks, the
 * Hugging Face sharded layout both ways, malformed inputs (each refused with its code and a
 * message naming the tensor, leaving nothing behind), cancellation, metadata, overwrite. */
#include <stdlib.h>
#include <sys/stat.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* --- helpers -------------------------------------------------------------------------------- */

static shardpoint_convert_options options_with(uint32_t flags, uint64_t buffer_size) {
    shardpoint_convert_options o = SHARDPOINT_CONVERT_OPTIONS_INIT;
    o.flags = flags | SHARDPOINT_CONVERT_NO_FSYNC; /* the tests need no durability */
    o.buffer_size = buffer_size;
    return o;
}

/* A safetensors file from its header text (`declared`: the header length written in the first 8
 * bytes, or UINT64_MAX for the real one) and data bytes. */
static void write_safetensors(const char *path, const char *header, uint64_t declared, const void *data, size_t len) {
    size_t n = strlen(header);
    uint64_t length = declared == UINT64_MAX ? n : declared;
    unsigned char *buf = malloc(8 + n + len);
    for (int i = 0; i < 8; ++i) buf[i] = (unsigned char)(length >> (8 * i));
    memcpy(buf + 8, header, n);
    if (len) memcpy(buf + 8 + n, data, len);
    assert_int_equal(write_file(path, buf, 8 + n + len), 0);
    free(buf);
}

/* The header text of a safetensors file and where its data starts (malloc'd). */
static char *read_header(const char *path, unsigned char **file, size_t *file_len, uint64_t *data_start) {
    *file = read_file(path, file_len);
    assert_non_null(*file);
    assert_true(*file_len >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | (*file)[i];
    assert_true(8 + n <= *file_len);
    assert_int_equal(n % 8, 0); /* padded so that the data is aligned */
    char *text = malloc(n + 1);
    memcpy(text, *file + 8, n);
    text[n] = '\0';
    *data_start = 8 + n;
    return text;
}

/* Checks tensor `t` in the safetensors file `path` by hand: its dtype name, and its bytes at its
 * data_offsets equal the generator's C-order image, aligned to the element size. */
static void assert_in_file(const char *path, const tdesc *t, const char *dtype_name) {
    unsigned char *file;
    size_t len;
    uint64_t data_start;
    char *header = read_header(path, &file, &len, &data_start);
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->fqn, dtype_name);
    const char *at = strstr(header, key);
    if (!at) fail_msg("'%s' not in the header of %s as %s: %s", t->fqn, path, dtype_name, header);
    const char *offsets = strstr(at, "\"data_offsets\":[");
    assert_non_null(offsets);
    unsigned long long begin = 0, end = 0;
    assert_int_equal(sscanf(offsets, "\"data_offsets\":[%llu,%llu]", &begin, &end), 2);
    assert_int_equal(end - begin, tdesc_nbytes(t));
    assert_true(data_start + end <= len);
    assert_int_equal((data_start + begin) % shardpoint_dtype_size(t->dtype), 0);
    assert_int_equal(check_box(t, ZEROS, t->shape, file + data_start + begin, NULL), 0);
    free(header);
    free(file);
}

static const char *st_name(int32_t dtype) {
    switch (dtype) {
        case SHARDPOINT_DTYPE_F32: return "F32";
        case SHARDPOINT_DTYPE_BF16: return "BF16";
        case SHARDPOINT_DTYPE_F16: return "F16";
        case SHARDPOINT_DTYPE_I64: return "I64";
        default: return "?";
    }
}

static void assert_checkpoint_holds(const char *dir, const tdesc *ts, size_t count) {
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, dir, NULL));
    uint64_t entries = 0;
    SP_OK(shardpoint_reader_entry_count(reader, &entries));
    assert_int_equal(entries, count);
    for (size_t i = 0; i < count; ++i) {
        int rc = 0;
        uint64_t bad = load_whole_mismatches(reader, &ts[i], &rc);
        if (rc) fail_msg("'%s': %s: %s", ts[i].fqn, shardpoint_error_name(rc), shardpoint_last_error());
        assert_int_equal(bad, 0);
    }
    shardpoint_reader_free(reader);
}

static void assert_metadata(const char *dir, const char *key, const char *want) {
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, dir, NULL));
    const char *value = NULL;
    SP_OK(shardpoint_reader_metadata_get(reader, key, &value));
    assert_string_equal(value, want);
    shardpoint_reader_free(reader);
}

static int save_with_metadata(const char *dir, const tdesc *ts, size_t count, const char *const *kv, size_t pairs) {
    void *bufs[64];
    shardpoint_save *save = NULL;
    SP_OK(shardpoint_save_new(&save, dir, NULL, NULL));
    for (size_t i = 0; i < count; ++i) {
        bufs[i] = make_box(&ts[i], ZEROS, ts[i].shape);
        SP_OK(shardpoint_save_add_tensor(save, ts[i].fqn, ts[i].dtype, ts[i].ndim, ts[i].shape, ZEROS, ts[i].shape, bufs[i], NULL));
    }
    for (size_t k = 0; k < pairs; ++k) SP_OK(shardpoint_save_set_metadata(save, kv[2 * k], kv[2 * k + 1]));
    int rc = shardpoint_save_commit(save);
    shardpoint_save_free(save);
    for (size_t i = 0; i < count; ++i) free(bufs[i]);
    return rc;
}

/* --- round trips ---------------------------------------------------------------------------- */

static const tdesc EVERY_DTYPE[] = {
    {"t.bool", SHARDPOINT_DTYPE_BOOL, 2, {3, 5}, 1},
    {"t.u8", SHARDPOINT_DTYPE_U8, 1, {17}, 2},
    {"t.i8", SHARDPOINT_DTYPE_I8, 2, {2, 9}, 3},
    {"t.i16", SHARDPOINT_DTYPE_I16, 2, {7, 3}, 4},
    {"t.i32", SHARDPOINT_DTYPE_I32, 3, {2, 3, 4}, 5},
    {"t.i64", SHARDPOINT_DTYPE_I64, 1, {11}, 6},
    {"t.u16", SHARDPOINT_DTYPE_U16, 1, {13}, 7},
    {"t.u32", SHARDPOINT_DTYPE_U32, 2, {3, 3}, 8},
    {"t.u64", SHARDPOINT_DTYPE_U64, 1, {5}, 9},
    {"t.f16", SHARDPOINT_DTYPE_F16, 2, {4, 7}, 10},
    {"t.bf16", SHARDPOINT_DTYPE_BF16, 2, {5, 9}, 11},
    {"t.f32", SHARDPOINT_DTYPE_F32, 2, {6, 10}, 12},
    {"t.f64.big", SHARDPOINT_DTYPE_F64, 3, {9, 70, 3}, 13}, /* 15120 bytes: pieces of a 4 KiB buffer */
    {"t.c64", SHARDPOINT_DTYPE_COMPLEX64, 1, {6}, 14},
    {"t.f8e4m3", SHARDPOINT_DTYPE_F8_E4M3FN, 2, {3, 11}, 15},
    {"t.f8e5m2", SHARDPOINT_DTYPE_F8_E5M2, 1, {19}, 16},
    {"t.scalar", SHARDPOINT_DTYPE_F32, 0, {0}, 17},
    {"t.empty", SHARDPOINT_DTYPE_F16, 2, {0, 5}, 18},
    {"t.empty3", SHARDPOINT_DTYPE_BF16, 3, {3, 0, 2}, 19},
    {"t.wide", SHARDPOINT_DTYPE_U8, 2, {2, 5000}, 20}, /* rows larger than the buffer: split inside a row */
};
static const char *const ST_NAMES[] = {"BOOL", "U8",  "I8",  "I16", "I32", "I64",     "U16",     "U32", "U64", "F16",
                                       "BF16", "F32", "F64", "C64", "F8_E4M3", "F8_E5M2", "F32",   "F16", "BF16", "U8"};
#define EVERY_COUNT (sizeof EVERY_DTYPE / sizeof EVERY_DTYPE[0])

static void test_every_dtype_round_trip(void **state) {
    char *ck = path_join(*state, "ck"), *st = path_join(*state, "m.safetensors"), *back = path_join(*state, "back"),
         *st2 = path_join(*state, "again.safetensors");
    const char *kv[] = {"step", "1000", "note", "gr\xc3\xbc\xc3\x9f \"quoted\" \\ {json}", "empty", ""};
    SP_OK(save_with_metadata(ck, EVERY_DTYPE, EVERY_COUNT, kv, 3));

    shardpoint_convert_options small = options_with(0, 4096);
    SP_OK(shardpoint_convert_to_safetensors(ck, st, &small));
    for (size_t i = 0; i < EVERY_COUNT; ++i) assert_in_file(st, &EVERY_DTYPE[i], ST_NAMES[i]);
    unsigned char *file;
    size_t len;
    uint64_t data_start;
    char *header = read_header(st, &file, &len, &data_start);
    assert_non_null(strstr(header, "{\"__metadata__\":{")); /* first, before the tensors */
    assert_non_null(strstr(header, "\"note\":\"gr\xc3\xbc\xc3\x9f \\\"quoted\\\" \\\\ {json}\""));
    assert_non_null(strstr(header, "\"step\":\"1000\""));
    assert_non_null(strstr(header, "\"empty\":\"\""));
    assert_non_null(strstr(header, "\"t.scalar\":{\"dtype\":\"F32\",\"shape\":[],"));
    free(header);
    free(file);

    SP_OK(shardpoint_convert_from_safetensors(st, back, &small));
    assert_checkpoint_holds(back, EVERY_DTYPE, EVERY_COUNT);
    assert_metadata(back, "note", kv[3]);
    assert_metadata(back, "step", "1000");
    assert_metadata(back, "empty", "");
    /* The big tensors became several chunks of at most the buffer; a whole load is the same. */
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, back, NULL));
    uint64_t index = 0;
    shardpoint_entry_info e;
    SP_OK(shardpoint_reader_find(reader, "t.wide", &index));
    SP_OK(shardpoint_reader_entry_info(reader, index, &e));
    assert_int_equal(e.chunk_count, 4); /* 2 rows of 5000 bytes, each split in 4096 + 904 */
    shardpoint_reader_free(reader);

    /* Back out again with the default buffer: the same file, byte for byte. */
    SP_OK(shardpoint_convert_to_safetensors(back, st2, NULL));
    size_t len1, len2;
    unsigned char *a = read_file(st, &len1), *b = read_file(st2, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(a, b, len1);
    free(a);
    free(b);
    free(ck), free(st), free(back), free(st2);
}

static void test_unmappable_checkpoints_refused(void **state) {
    char *ck = path_join(*state, "ck"), *st = path_join(*state, "out.safetensors");
    const tdesc c128[] = {{"ok", SHARDPOINT_DTYPE_F32, 1, {4}, 1}, {"z.complex", SHARDPOINT_DTYPE_COMPLEX128, 1, {3}, 2}};
    SP_OK(save_whole(ck, c128, 2, NULL));
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, NULL), SHARDPOINT_EDTYPE, "'z.complex'");
    assert_false(file_exists(st));
    assert_int_equal(count_dir_entries(*state), 1); /* only ck: no temporary file either */

    /* A blob: refused by name, or left out with SKIP_BYTES. */
    shardpoint_save_options overwrite = SHARDPOINT_SAVE_OPTIONS_INIT;
    overwrite.flags = SHARDPOINT_SAVE_OVERWRITE;
    shardpoint_save *save = NULL;
    float w[4] = {1, 2, 3, 4};
    uint64_t shape[1] = {4};
    SP_OK(shardpoint_save_new(&save, ck, NULL, &overwrite));
    SP_OK(shardpoint_save_add_tensor(save, "w", SHARDPOINT_DTYPE_F32, 1, shape, ZEROS, shape, w, NULL));
    SP_OK(shardpoint_save_add_bytes(save, "rng.state", "abc", 3));
    SP_OK(shardpoint_save_commit(save));
    shardpoint_save_free(save);
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, NULL), SHARDPOINT_EKIND, "'rng.state'");
    assert_false(file_exists(st));
    shardpoint_convert_options skip = options_with(SHARDPOINT_CONVERT_SKIP_BYTES, 0);
    SP_OK(shardpoint_convert_to_safetensors(ck, st, &skip));
    unsigned char *file;
    size_t len;
    uint64_t data_start;
    char *header = read_header(st, &file, &len, &data_start);
    assert_null(strstr(header, "rng.state"));
    assert_int_equal(len - data_start, sizeof w);
    assert_memory_equal(file + data_start, w, sizeof w);
    free(header), free(file);

    /* A tensor only partly saved cannot be written whole. */
    char *partial = path_join(*state, "partial");
    shardpoint_save_options allow = SHARDPOINT_SAVE_OPTIONS_INIT;
    allow.flags = SHARDPOINT_SAVE_ALLOW_PARTIAL;
    uint64_t full[2] = {4, 4}, half[2] = {2, 4};
    float rows[8] = {0};
    SP_OK(shardpoint_save_new(&save, partial, NULL, &allow));
    SP_OK(shardpoint_save_add_tensor(save, "half.saved", SHARDPOINT_DTYPE_F32, 2, full, ZEROS, half, rows, NULL));
    SP_OK(shardpoint_save_commit(save));
    shardpoint_save_free(save);
    char *st3 = path_join(*state, "partial.safetensors");
    SP_FAILS(shardpoint_convert_to_safetensors(partial, st3, NULL), SHARDPOINT_EUNCOVERED, "'half.saved'");
    assert_false(file_exists(st3));
    free(ck), free(st), free(partial), free(st3);
}

/* --- checkpoints sharded by several ranks ----------------------------------------------------- */

static const tdesc RANKED[] = {
    {"r.rows", SHARDPOINT_DTYPE_F32, 2, {10, 7}, 31},
    {"r.block", SHARDPOINT_DTYPE_BF16, 2, {6, 8}, 32},
    {"r.repl", SHARDPOINT_DTYPE_I64, 1, {9}, 33},
};

static void save_sharded_rank(int rank, int world, shardpoint_comm *comm, void *arg, rank_result *res) {
    const char *dir = arg;
    shardpoint_save *s = NULL;
    if (rank_note(res, shardpoint_save_new(&s, dir, comm, NULL), "save_new")) return;
    void *bufs[3];
    uint64_t off[2], sz[2];
    off[0] = part_lo(10, rank, world), off[1] = 0, sz[0] = part_len(10, rank, world), sz[1] = 7;
    bufs[0] = make_box(&RANKED[0], off, sz);
    rank_note(res, shardpoint_save_add_tensor(s, RANKED[0].fqn, RANKED[0].dtype, 2, RANKED[0].shape, off, sz, bufs[0], NULL), "rows");
    off[0] = 0, off[1] = part_lo(8, rank, world), sz[0] = 6, sz[1] = part_len(8, rank, world);
    bufs[1] = make_box(&RANKED[1], off, sz);
    rank_note(res, shardpoint_save_add_tensor(s, RANKED[1].fqn, RANKED[1].dtype, 2, RANKED[1].shape, off, sz, bufs[1], NULL), "cols");
    bufs[2] = make_box(&RANKED[2], ZEROS, RANKED[2].shape);
    rank_note(res, shardpoint_save_add_tensor(s, RANKED[2].fqn, RANKED[2].dtype, 1, RANKED[2].shape, ZEROS, RANKED[2].shape,
                                              bufs[2], NULL), "replicated");
    rank_note(res, shardpoint_save_commit(s), "commit");
    shardpoint_save_free(s);
    for (int i = 0; i < 3; ++i) free(bufs[i]);
}

static void test_checkpoint_of_several_ranks(void **state) {
    char *ck = path_join(*state, "ck"), *st = path_join(*state, "m.safetensors"), *back = path_join(*state, "back");
    rank_result res[3];
    assert_int_equal(run_ranks(3, save_sharded_rank, ck, res), 0);
    for (int r = 0; r < 3; ++r)
        if (res[r].rc) fail_msg("rank %d: %s", r, res[r].message);
    shardpoint_convert_options small = options_with(0, 4096);
    SP_OK(shardpoint_convert_to_safetensors(ck, st, &small));
    for (size_t i = 0; i < 3; ++i) assert_in_file(st, &RANKED[i], st_name(RANKED[i].dtype));
    SP_OK(shardpoint_convert_from_safetensors(st, back, NULL));
    assert_checkpoint_holds(back, RANKED, 3);
    free(ck), free(st), free(back);
}

/* --- the Hugging Face sharded layout ---------------------------------------------------------- */

static const tdesc MODEL[] = {
    {"model.embed", SHARDPOINT_DTYPE_F32, 2, {16, 40}, 41},      /* 2560 bytes */
    {"model.layers.0.w", SHARDPOINT_DTYPE_BF16, 2, {20, 30}, 42}, /* 1200 */
    {"model.layers.0.b", SHARDPOINT_DTYPE_F32, 1, {30}, 43},      /* 120 */
    {"model.layers.1.w", SHARDPOINT_DTYPE_BF16, 2, {20, 30}, 44}, /* 1200 */
    {"model.layers.1.b", SHARDPOINT_DTYPE_F32, 1, {30}, 45},
    {"model.norm", SHARDPOINT_DTYPE_F16, 1, {40}, 46},
    {"lm_head", SHARDPOINT_DTYPE_F32, 2, {40, 40}, 47},          /* 6400: larger than a shard, alone */
};
#define MODEL_COUNT (sizeof MODEL / sizeof MODEL[0])

static int count_shards(const char *dir) {
    char **names;
    size_t count;
    list_files(dir, &names, &count);
    int shards = 0;
    for (size_t i = 0; i < count; ++i) {
        if (strncmp(names[i], "model-", 6) == 0 && strstr(names[i], ".safetensors")) ++shards;
        if (strstr(names[i], ".tmp-")) fail_msg("temporary file '%s' left in %s", names[i], dir);
    }
    free_names(names, count);
    return shards;
}

static void test_hf_sharded_layout_both_ways(void **state) {
    char *ck = path_join(*state, "ck"), *hf = path_join(*state, "hf"), *back = path_join(*state, "back");
    char *index = path_join(hf, "model.safetensors.index.json"), *config = path_join(hf, "config.json");
    const char *kv[] = {"format", "pt"};
    SP_OK(save_with_metadata(ck, MODEL, MODEL_COUNT, kv, 1));
    assert_int_equal(mkdir(hf, 0755), 0);
    assert_int_equal(write_file(config, "{}", 2), 0); /* a model directory's other files stay */

    shardpoint_convert_options o = options_with(0, 4096);
    o.max_shard_size = 3000;
    SP_OK(shardpoint_convert_to_safetensors(ck, hf, &o));
    /* In name order: lm_head (6400, larger than the limit: alone), then embed + layers.0.b (2680),
     * then layers.0.w + layers.1.b + layers.1.w + norm (2600). */
    int shards = count_shards(hf);
    assert_int_equal(shards, 3);
    size_t len;
    unsigned char *text = read_file(index, &len);
    assert_non_null(text);
    uint64_t total = 0;
    for (size_t i = 0; i < MODEL_COUNT; ++i) total += tdesc_nbytes(&MODEL[i]);
    char want[128];
    snprintf(want, sizeof want, "\"total_size\": %llu", (unsigned long long)total);
    assert_non_null(strstr((char *)text, want));
    snprintf(want, sizeof want, "\"lm_head\": \"model-00001-of-%05d.safetensors\"", shards);
    assert_non_null(strstr((char *)text, want));
    free(text);
    for (int k = 1; k <= shards; ++k) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k, shards);
        char *shard = path_join(hf, name);
        assert_true(file_exists(shard));
        free(shard);
    }
    char shard1[64];
    snprintf(shard1, sizeof shard1, "model-00001-of-%05d.safetensors", shards);
    char *lm = path_join(hf, shard1);
    assert_in_file(lm, &MODEL[6], "F32");
    free(lm);

    /* Back, from the directory and from the index. */
    SP_OK(shardpoint_convert_from_safetensors(hf, back, NULL));
    assert_checkpoint_holds(back, MODEL, MODEL_COUNT);
    assert_metadata(back, "format", "pt");
    shardpoint_convert_options replace = options_with(SHARDPOINT_CONVERT_OVERWRITE, 4096);
    SP_OK(shardpoint_convert_from_safetensors(index, back, &replace));
    assert_checkpoint_holds(back, MODEL, MODEL_COUNT);

    /* Again without overwrite: refused; with it and a larger limit: one shard, the old ones gone. */
    SP_FAILS(shardpoint_convert_to_safetensors(ck, hf, &o), SHARDPOINT_EEXISTS, "already exists");
    shardpoint_convert_options one = options_with(SHARDPOINT_CONVERT_OVERWRITE, 0);
    one.max_shard_size = 1u << 20;
    SP_OK(shardpoint_convert_to_safetensors(ck, hf, &one));
    assert_int_equal(count_shards(hf), 1);
    char *only = path_join(hf, "model-00001-of-00001.safetensors");
    assert_true(file_exists(only));
    assert_true(file_exists(config));
    for (size_t i = 0; i < MODEL_COUNT; ++i) assert_in_file(only, &MODEL[i], st_name(MODEL[i].dtype));
    /* Unsharded into the directory: model.safetensors replaces the sharded set. */
    shardpoint_convert_options single = options_with(SHARDPOINT_CONVERT_OVERWRITE, 0);
    SP_OK(shardpoint_convert_to_safetensors(ck, hf, &single));
    assert_int_equal(count_shards(hf), 0);
    assert_false(file_exists(index));
    char *model = path_join(hf, "model.safetensors");
    assert_true(file_exists(model));
    assert_int_equal(count_dir_entries(hf), 2); /* model.safetensors and config.json */
    char *back2 = path_join(*state, "back2");
    SP_OK(shardpoint_convert_from_safetensors(hf, back2, NULL));
    assert_checkpoint_holds(back2, MODEL, MODEL_COUNT);
    free(ck), free(hf), free(back), free(index), free(config), free(only), free(model), free(back2);
}

/* --- malformed inputs -------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *what;
    const char *header;
    uint64_t declared; /* UINT64_MAX: the header's real length */
    size_t data_len;
    int code;
    const char *needle;
} bad_case;

static const bad_case BAD[] = {
    {"header length beyond the file", "{}      ", 4096, 0, SHARDPOINT_EFORMAT, "beyond the end"},
    {"header length above the limit", "{}      ", 200000000, 0, SHARDPOINT_EFORMAT, "limit"},
    {"bad JSON", "{\"a\":{\"dtype\":\"F32\",", UINT64_MAX, 0, SHARDPOINT_EFORMAT, "not valid JSON"},
    {"not an object", "[1, 2, 3]", UINT64_MAX, 0, SHARDPOINT_EFORMAT, "not a JSON object"},
    {"offsets out of range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", UINT64_MAX, 8,
     SHARDPOINT_EFORMAT, "'w'"},
    {"overlapping offsets",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     UINT64_MAX, 12, SHARDPOINT_EFORMAT, "overlaps"},
    {"a gap between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     UINT64_MAX, 12, SHARDPOINT_EFORMAT, "belong to no tensor"},
    {"bytes after the last tensor", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", UINT64_MAX, 6,
     SHARDPOINT_EFORMAT, "belong to no tensor"},
    {"size not shape times dtype", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", UINT64_MAX, 8,
     SHARDPOINT_EFORMAT, "'w'"},
    {"unknown dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, SHARDPOINT_EDTYPE, "'F33'"},
    {"dtype shardpoint lacks", "{\"q\":{\"dtype\":\"F8_E8M0\",\"shape\":[4],\"data_offsets\":[0,4]}}", UINT64_MAX, 4,
     SHARDPOINT_EDTYPE, "'q'"},
    {"duplicate key",
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     UINT64_MAX, 1, SHARDPOINT_EFORMAT, "twice"},
    {"negative shape", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", UINT64_MAX, 1, SHARDPOINT_EFORMAT, "'w'"},
    {"missing data_offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", UINT64_MAX, 1, SHARDPOINT_EFORMAT, "data_offsets"},
    {"metadata not strings", "{\"__metadata__\":{\"step\":7}}", UINT64_MAX, 0, SHARDPOINT_EFORMAT, "'step'"},
    {"offsets reversed", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", UINT64_MAX, 4, SHARDPOINT_EFORMAT, "'w'"},
};

static void test_malformed_inputs_refused(void **state) {
    char *st = path_join(*state, "bad.safetensors"), *ck = path_join(*state, "sub/ck");
    unsigned char zeros[64] = {0};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; ++i) {
        const bad_case *c = &BAD[i];
        write_safetensors(st, c->header, c->declared, zeros, c->data_len);
        int rc = shardpoint_convert_from_safetensors(st, ck, NULL);
        if (rc != c->code || !strstr(shardpoint_last_error(), c->needle))
            fail_msg("%s: %s: %s (wanted %s mentioning \"%s\")", c->what, shardpoint_error_name(rc), shardpoint_last_error(),
                     shardpoint_error_name(c->code), c->needle);
        assert_non_null(strstr(shardpoint_last_error(), st)); /* the message names the file */
        assert_int_equal(count_dir_entries(*state), 1);       /* no checkpoint, no directory */
    }
    /* Shorter than the 8-byte length. */
    assert_int_equal(write_file(st, "\x02\x00\x00", 3), 0);
    SP_FAILS(shardpoint_convert_from_safetensors(st, ck, NULL), SHARDPOINT_EFORMAT, "truncated");
    /* A truncated copy of a good file: the last tensor's bytes are missing. */
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    write_safetensors(st, good, UINT64_MAX, zeros, 12);
    SP_FAILS(shardpoint_convert_from_safetensors(st, ck, NULL), SHARDPOINT_EFORMAT, "truncated: tensor 'a'");
    assert_int_equal(count_dir_entries(*state), 1);
    /* Missing input. */
    char *missing = path_join(*state, "missing.safetensors");
    SP_FAILS(shardpoint_convert_from_safetensors(missing, ck, NULL), SHARDPOINT_ENOTFOUND, "missing.safetensors");
    free(st), free(ck), free(missing);
}

static void test_bad_indexes_refused(void **state) {
    char *dir = path_join(*state, "hf"), *ck = path_join(*state, "ck");
    assert_int_equal(mkdir(dir, 0755), 0);
    char *shard = path_join(dir, "model-00001-of-00001.safetensors"), *index = path_join(dir, "model.safetensors.index.json");
    unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    write_safetensors(shard, "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", UINT64_MAX, data, 8);
    struct {
        const char *index;
        int code;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\":{\"a\":\"model-00001-of-00001.safetensors\",\"b\":\"model-00001-of-00001.safetensors\"}}",
         SHARDPOINT_EFORMAT, "'b'"},
        {"{\"weight_map\":{\"a\":5}}", SHARDPOINT_EFORMAT, "'a'"},
        {"{\"weight_map\":{\"a\":\"../elsewhere.safetensors\"}}", SHARDPOINT_EPATH, "elsewhere"},
        {"{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\"}}", SHARDPOINT_ENOTFOUND, "model-00002-of-00002"},
        {"{\"metadata\":{}}", SHARDPOINT_EFORMAT, "weight_map"},
        {"{\"weight_map\":", SHARDPOINT_EFORMAT, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        assert_int_equal(write_file(index, cases[i].index, strlen(cases[i].index)), 0);
        SP_FAILS(shardpoint_convert_from_safetensors(index, ck, NULL), cases[i].code, cases[i].needle);
        assert_false(file_exists(ck));
    }
    const char *ok = "{\"metadata\":{\"total_size\":8},\"weight_map\":{\"a\":\"model-00001-of-00001.safetensors\"}}";
    assert_int_equal(write_file(index, ok, strlen(ok)), 0);
    SP_OK(shardpoint_convert_from_safetensors(dir, ck, NULL));
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, ck, NULL));
    unsigned char got[8];
    uint64_t shape[1] = {8};
    SP_OK(shardpoint_reader_read_tensor(reader, "a", SHARDPOINT_DTYPE_U8, 1, ZEROS, shape, got, NULL));
    assert_memory_equal(got, data, 8);
    shardpoint_reader_free(reader);
    free(dir), free(ck), free(shard), free(index);
}

/* --- cancellation, existing outputs, options ---------------------------------------------------- */

/* What a progress callback saw; it cancels at the first report, or at the last one (done == total). */
typedef struct counter {
    int calls;
    enum { NEVER, AT_FIRST, AT_LAST } cancel;
    int32_t phase;
    uint64_t last_done, last_total;
} counter;

static int count_progress(void *user, int32_t phase, uint64_t done, uint64_t total) {
    counter *c = user;
    ++c->calls;
    c->phase = phase;
    c->last_done = done;
    c->last_total = total;
    return (c->cancel == AT_FIRST && c->calls == 1) || (c->cancel == AT_LAST && done == total);
}

static void test_cancel_leaves_nothing(void **state) {
    char *ck = path_join(*state, "ck"), *out = path_join(*state, "new/dir/m.safetensors"), *hf = path_join(*state, "hf");
    SP_OK(save_whole(ck, EVERY_DTYPE, EVERY_COUNT, NULL));
    uint64_t total = 0;
    for (size_t i = 0; i < EVERY_COUNT; ++i) total += tdesc_nbytes(&EVERY_DTYPE[i]);

    /* Reports: phase CONVERT, 0 first, done == total last. */
    counter c = {0, NEVER, 0, 0, 0};
    shardpoint_convert_options o = options_with(0, 4096);
    o.progress = count_progress;
    o.progress_user = &c;
    char *probe = path_join(*state, "probe.safetensors");
    SP_OK(shardpoint_convert_to_safetensors(ck, probe, &o));
    assert_int_equal(c.phase, SHARDPOINT_PROGRESS_CONVERT);
    assert_int_equal(c.last_done, total);
    assert_int_equal(c.last_total, total);
    assert_true(c.calls >= 2);

    /* Canceled at the first and at the last report: no file, no directory made for it. */
    char *new_dir = path_join(*state, "new");
    for (int when = AT_FIRST; when <= AT_LAST; ++when) {
        counter cancel = {0, when, 0, 0, 0};
        o.progress_user = &cancel;
        SP_FAILS(shardpoint_convert_to_safetensors(ck, out, &o), SHARDPOINT_ECANCELED, "canceled");
        assert_false(file_exists(new_dir));
        o.max_shard_size = 2000;
        cancel.calls = 0;
        SP_FAILS(shardpoint_convert_to_safetensors(ck, hf, &o), SHARDPOINT_ECANCELED, "canceled");
        assert_false(file_exists(hf));
        o.max_shard_size = 0;
    }
    free(new_dir);

    /* From safetensors over an existing checkpoint, canceled: the checkpoint is untouched. */
    char *target = path_join(*state, "target");
    const tdesc other[] = {{"other", SHARDPOINT_DTYPE_I32, 1, {5}, 99}};
    SP_OK(save_whole(target, other, 1, NULL));
    snapshot before;
    take_snapshot(target, &before);
    counter cancel = {0, AT_LAST, 0, 0, 0};
    shardpoint_convert_options from = options_with(SHARDPOINT_CONVERT_OVERWRITE, 4096);
    from.progress = count_progress;
    from.progress_user = &cancel;
    SP_FAILS(shardpoint_convert_from_safetensors(probe, target, &from), SHARDPOINT_ECANCELED, "canceled");
    assert_unchanged(target, &before);
    free_snapshot(&before);
    assert_checkpoint_holds(target, other, 1);
    char *fresh = path_join(*state, "fresh/ck");
    cancel.calls = 0;
    SP_FAILS(shardpoint_convert_from_safetensors(probe, fresh, &from), SHARDPOINT_ECANCELED, "canceled");
    char *fresh_parent = path_join(*state, "fresh");
    assert_false(file_exists(fresh_parent));
    free(ck), free(out), free(hf), free(probe), free(target), free(fresh), free(fresh_parent);
}

static void test_existing_outputs_and_options(void **state) {
    char *ck = path_join(*state, "ck"), *st = path_join(*state, "m.safetensors"), *back = path_join(*state, "back");
    SP_OK(save_whole(ck, MODEL, 2, NULL));
    SP_OK(shardpoint_convert_to_safetensors(ck, st, NULL));
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, NULL), SHARDPOINT_EEXISTS, "m.safetensors");
    shardpoint_convert_options replace = options_with(SHARDPOINT_CONVERT_OVERWRITE, 0);
    SP_OK(shardpoint_convert_to_safetensors(ck, st, &replace));
    SP_OK(shardpoint_convert_from_safetensors(st, back, NULL));
    SP_FAILS(shardpoint_convert_from_safetensors(st, back, NULL), SHARDPOINT_EEXISTS, NULL);
    /* Save options reach the checkpoint: zstd blocks. */
    shardpoint_save_options zstd = SHARDPOINT_SAVE_OPTIONS_INIT;
    zstd.codec = SHARDPOINT_CODEC_ZSTD;
    replace.save_options = &zstd;
    SP_OK(shardpoint_convert_from_safetensors(st, back, &replace));
    shardpoint_reader *reader = NULL;
    SP_OK(shardpoint_reader_open(&reader, back, NULL));
    shardpoint_chunk_info chunk;
    SP_OK(shardpoint_reader_chunk_info(reader, 0, 0, &chunk));
    assert_int_equal(chunk.transform, SHARDPOINT_TRANSFORM_ZSTD_BLOCKS);
    shardpoint_storage_info info;
    SP_OK(shardpoint_reader_storage_info(reader, &info));
    assert_string_equal(info.checkpoint_id, "back");
    shardpoint_reader_free(reader);
    assert_checkpoint_holds(back, MODEL, 2);

    /* A sharded model cannot go into a path that is a file. */
    shardpoint_convert_options sharded = options_with(SHARDPOINT_CONVERT_OVERWRITE, 0);
    sharded.max_shard_size = 100;
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, &sharded), SHARDPOINT_EINVAL, "directory");

    /* Options. */
    shardpoint_convert_options o;
    SP_OK(shardpoint_convert_options_init(&o, SHARDPOINT_CONVERT_OPTIONS_VERSION));
    assert_int_equal(o.version, SHARDPOINT_CONVERT_OPTIONS_VERSION);
    assert_int_equal(o.flags, 0);
    assert_null(o.progress);
    SP_FAILS(shardpoint_convert_options_init(&o, 99), SHARDPOINT_EINVAL, "version");
    o.flags = 0x100;
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, &o), SHARDPOINT_EINVAL, "flags");
    o.flags = 0;
    o.buffer_size = 100;
    SP_FAILS(shardpoint_convert_to_safetensors(ck, st, &o), SHARDPOINT_EINVAL, "buffer");
    SP_FAILS(shardpoint_convert_to_safetensors(NULL, st, NULL), SHARDPOINT_EINVAL, "ckpt_dir");
    char *nothing = path_join(*state, "nothing");
    SP_FAILS(shardpoint_convert_to_safetensors(nothing, st, NULL), SHARDPOINT_ENOTFOUND, NULL);
    free(ck), free(st), free(back), free(nothing);
}

static void test_parse_size(void **state) {
    (void)state;
    struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {{"4096", 4096}, {"5GB", 5000000000ull}, {"500MB", 500000000ull}, {"64KiB", 65536}, {"2gib", 2ull << 30},
              {"10 MB", 10000000}, {"1TB", 1000000000000ull}, {"7B", 7}, {"0", 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; ++i) {
        uint64_t v = 1;
        SP_OK(shardpoint_parse_size(ok[i].text, &v));
        assert_int_equal(v, ok[i].bytes);
    }
    const char *bad[] = {"", "GB", "5 XB", "-1", "1.5GB", "99999999999999999999", "20000000TiB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        uint64_t v = 12345;
        SP_FAILS(shardpoint_parse_size(bad[i], &v), SHARDPOINT_EINVAL, "size");
        assert_int_equal(v, 12345); /* untouched on failure */
    }
}

#define T(name) cmocka_unit_test_setup_teardown(name, dir_setup, dir_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_every_dtype_round_trip),      T(test_unmappable_checkpoints_refused), T(test_checkpoint_of_several_ranks),
        T(test_hf_sharded_layout_both_ways), T(test_malformed_inputs_refused),       T(test_bad_indexes_refused),
        T(test_cancel_leaves_nothing),       T(test_existing_outputs_and_options),   T(test_parse_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
