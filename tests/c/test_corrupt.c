/* Damaged checkpoints on disk: each kind of damage is its own test and must produce its specific
 * error code with a message that names what is wrong, never a crash or wrong data. Metadata that
 * is well-formed but lies (paths leaving the directory, extents past the end of a file, chunks
 * outside their tensor...) is produced by make_bad_metadata, which re-encodes a valid checkpoint's
 * metadata with the core's own encoder. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static const uint64_t ZEROS[SHARDPOINT_MAX_NDIM] = {0};

/* The checkpoint every test starts from. */
static const tdesc W = {"w", SHARDPOINT_DTYPE_F32, 2, {8, 6}, 1};   /* two chunks: rows 0-3, 4-7 */
static const tdesc V = {"v", SHARDPOINT_DTYPE_I16, 1, {100}, 2};
static const uint64_t BLOB_LEN = 300;
enum { BLOB_SEED = 3 };

typedef struct fixture {
    char *tmp;
    char *dir;  /* the checkpoint */
    char *meta; /* its metadata file */
} fixture;

static int write_standard(const char *dir, int compression) {
    const uint64_t sz[2] = {4, 6}, off1[2] = {4, 0};
    void *w0 = make_box(&W, ZEROS, sz), *w1 = make_box(&W, off1, sz), *v = make_box(&V, ZEROS, V.shape);
    unsigned char blob[300];
    gen_fill(blob, BLOB_LEN, 0, BLOB_SEED, 0);
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.compression_level = compression;
    shardpoint_save *s = NULL;
    int rc = shardpoint_save_new(&s, dir, NULL, &o);
    if (!rc) rc = shardpoint_save_add_tensor(s, W.fqn, W.dtype, 2, W.shape, ZEROS, sz, w0, NULL);
    if (!rc) rc = shardpoint_save_add_tensor(s, W.fqn, W.dtype, 2, W.shape, off1, sz, w1, NULL);
    if (!rc) rc = shardpoint_save_add_tensor(s, V.fqn, V.dtype, 1, V.shape, ZEROS, V.shape, v, NULL);
    if (!rc) rc = shardpoint_save_add_bytes(s, "blob", blob, BLOB_LEN);
    if (!rc) rc = shardpoint_save_commit(s);
    shardpoint_save_free(s);
    free(w0), free(w1), free(v);
    return rc;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->tmp = tmp_dir_new("corrupt");
    if (!f->tmp) return -1;
    f->dir = path_join(f->tmp, "ckpt");
    f->meta = path_join(f->dir, "shardpoint.meta");
    *state = f;
    return write_standard(f->dir, 0) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    fixture *f = *state;
    tmp_dir_remove(f->tmp);
    free(f->dir), free(f->meta), free(f);
    return 0;
}

/* A reader pointer that must survive a failed open untouched. */
static shardpoint_reader *const SENTINEL = (shardpoint_reader *)(uintptr_t)0x5e57;

static void open_fails(const char *dir, int code, const char *needle) {
    shardpoint_reader *r = SENTINEL;
    SP_FAILS(shardpoint_reader_open(&r, dir, NULL), code, needle);
    assert_ptr_equal(r, SENTINEL);
}

/* The data file holding chunk 0 of `fqn` (malloc'd path) and where the chunk starts in it. */
static char *data_file_of(const char *dir, const char *fqn, uint64_t *offset, uint64_t *length) {
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t index;
    shardpoint_chunk_info ci;
    SP_OK(shardpoint_reader_find(r, fqn, &index));
    SP_OK(shardpoint_reader_chunk_info(r, index, 0, &ci));
    char *path = path_join(dir, ci.file);
    if (offset) *offset = ci.file_offset;
    if (length) *length = ci.stored_length;
    shardpoint_reader_free(r);
    return path;
}

static uint32_t crc32_bytes(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Writes a metadata file with a correct header (magic, version 1.0, CRCs) around `body`. */
static void write_meta_with_body(const char *path, const unsigned char *body, uint64_t len) {
    unsigned char *out = calloc(32 + len, 1);
    memcpy(out, "SHRDPNT\n", 8);
    const uint16_t major = 1, minor = 0;
    memcpy(out + 8, &major, 2);
    memcpy(out + 10, &minor, 2);
    memcpy(out + 16, &len, 8);
    uint32_t crc = crc32_bytes(body, len);
    memcpy(out + 24, &crc, 4);
    crc = crc32_bytes(out, 28);
    memcpy(out + 28, &crc, 4);
    memcpy(out + 32, body, len);
    assert_int_equal(write_file(path, out, 32 + len), 0);
    free(out);
}

static void run_bad_metadata(const char *dir, const char *variant) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(SP_MAKE_BAD_METADATA, SP_MAKE_BAD_METADATA, dir, variant, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("make_bad_metadata %s failed (%d)", variant, status);
}

/* --- the checkpoint itself --------------------------------------------------------------------- */

static void test_baseline_is_valid(void **state) {
    fixture *f = *state;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &W, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &V, NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
}

static void test_missing_checkpoint(void **state) {
    fixture *f = *state;
    char *nowhere = path_join(f->tmp, "nowhere");
    open_fails(nowhere, SHARDPOINT_ENOTFOUND, "nowhere");
    free(nowhere);
    /* a directory without metadata is not a checkpoint either */
    char *empty = path_join(f->tmp, "empty");
    assert_int_equal(mkdir(empty, 0755), 0);
    open_fails(empty, SHARDPOINT_ENOTFOUND, "shardpoint.meta");
    free(empty);
    /* nor is a data directory whose metadata was deleted */
    assert_int_equal(unlink(f->meta), 0);
    open_fails(f->dir, SHARDPOINT_ENOTFOUND, f->dir);
}

static void test_metadata_is_a_directory(void **state) {
    fixture *f = *state;
    assert_int_equal(unlink(f->meta), 0);
    assert_int_equal(mkdir(f->meta, 0755), 0);
    open_fails(f->dir, SHARDPOINT_EFORMAT, "not a regular file");
}

/* --- metadata file damage ---------------------------------------------------------------------- */

static void test_truncated_metadata_header(void **state) {
    fixture *f = *state;
    assert_int_equal(truncate(f->meta, 20), 0);
    open_fails(f->dir, SHARDPOINT_ETRUNCATED, "truncated");
    assert_int_equal(truncate(f->meta, 0), 0);
    open_fails(f->dir, SHARDPOINT_ETRUNCATED, "truncated");
}

static void test_truncated_metadata_body(void **state) {
    fixture *f = *state;
    long long size = file_size(f->meta);
    assert_true(size > 64);
    assert_int_equal(truncate(f->meta, size - 8), 0);
    open_fails(f->dir, SHARDPOINT_ETRUNCATED, "truncated");
}

static void test_garbage_metadata(void **state) {
    fixture *f = *state;
    unsigned char junk[256];
    gen_fill(junk, sizeof junk, 0, 99, 0);
    assert_int_equal(write_file(f->meta, junk, sizeof junk), 0);
    open_fails(f->dir, SHARDPOINT_EFORMAT, "magic");
}

/* A correct header and CRC around bytes that are not a Cap'n Proto message. */
static void test_garbage_message_body(void **state) {
    fixture *f = *state;
    unsigned char body[64];
    for (size_t i = 0; i < sizeof body; ++i) body[i] = (unsigned char)(0xf7 ^ (i * 37));
    write_meta_with_body(f->meta, body, sizeof body);
    open_fails(f->dir, SHARDPOINT_EFORMAT, "corrupt metadata");
}

static void test_metadata_body_length_not_words(void **state) {
    fixture *f = *state;
    unsigned char body[13] = {0};
    write_meta_with_body(f->meta, body, sizeof body);
    open_fails(f->dir, SHARDPOINT_EFORMAT, "length");
}

static void test_metadata_trailing_bytes(void **state) {
    fixture *f = *state;
    size_t len;
    unsigned char *bytes = read_file(f->meta, &len);
    bytes = realloc(bytes, len + 8);
    memset(bytes + len, 0, 8);
    assert_int_equal(write_file(f->meta, bytes, len + 8), 0);
    free(bytes);
    open_fails(f->dir, SHARDPOINT_EFORMAT, "trailing");
}

static void test_flipped_metadata_body_byte(void **state) {
    fixture *f = *state;
    long long size = file_size(f->meta);
    assert_int_equal(flip_byte(f->meta, size / 2), 0);
    open_fails(f->dir, SHARDPOINT_ECHECKSUM, "CRC");
}

static void test_flipped_metadata_header_byte(void **state) {
    fixture *f = *state;
    assert_int_equal(flip_byte(f->meta, 12), 0); /* the flags word */
    open_fails(f->dir, SHARDPOINT_ECHECKSUM, "header");
}

static void test_unknown_major_version(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "major3");
    open_fails(f->dir, SHARDPOINT_EVERSION, "version 3");
}

/* --- metadata that lies ------------------------------------------------------------------------- */

static void test_path_leaving_directory(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "path_parent");
    open_fails(f->dir, SHARDPOINT_EPATH, "../x");
}

static void test_absolute_path(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "path_absolute");
    open_fails(f->dir, SHARDPOINT_EPATH, "/etc/passwd");
}

static void test_extent_beyond_file(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "offset_beyond");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "beyond the end");
}

static void test_extent_names_missing_file_index(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "file_index");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "#99");
}

static void test_chunk_outside_shape(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "chunk_outside");
    open_fails(f->dir, SHARDPOINT_ESHAPE, "outside");
}

static void test_overlapping_chunks(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "overlap");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "overlapping");
}

static void test_too_many_dims_in_metadata(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "too_many_dims");
    open_fails(f->dir, SHARDPOINT_ESHAPE, "32 dimensions");
}

static void test_unknown_dtype_in_metadata(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "unknown_dtype");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "dtype");
}

static void test_duplicate_entry(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "duplicate");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "twice");
}

/* --- data file damage ---------------------------------------------------------------------------- */

static void test_flipped_data_byte(void **state) {
    fixture *f = *state;
    uint64_t offset;
    char *data = data_file_of(f->dir, "v", &offset, NULL);
    const uint64_t victim = 37; /* byte 37 of v: element 18, high byte */
    assert_int_equal(flip_byte(data, (long long)(offset + victim)), 0);

    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL)); /* opening reads no tensor bytes */
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_ECHECKSUM, "'v'");
    assert_non_null(strstr(shardpoint_last_error(), strrchr(data, '/') + 1)); /* names the data file */
    /* the other entries are intact and still load */
    assert_int_equal(load_whole_mismatches(r, &W, NULL), 0);
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_ECHECKSUM, "'v'");
    shardpoint_reader_free(r);

    /* NO_VERIFY: the load succeeds and delivers exactly the flipped byte */
    shardpoint_load_options lo = SHARDPOINT_LOAD_OPTIONS_INIT;
    lo.flags = SHARDPOINT_LOAD_NO_VERIFY;
    SP_OK(shardpoint_reader_open(&r, f->dir, &lo));
    SP_OK(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL));
    assert_int_equal(check_box(&V, ZEROS, V.shape, got, NULL), 1);
    assert_int_equal(((unsigned char *)got)[victim], gen_byte(victim, V.seed, 0) ^ 0xffu);
    /* verify ignores NO_VERIFY */
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_ECHECKSUM, "'v'");
    shardpoint_reader_free(r);
    free(data);
}

static void test_flipped_blob_byte(void **state) {
    fixture *f = *state;
    uint64_t offset;
    char *data = data_file_of(f->dir, "blob", &offset, NULL);
    assert_int_equal(flip_byte(data, (long long)offset + 299), 0); /* the last byte */
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    unsigned char got[300];
    uint64_t len = 12345;
    SP_FAILS(shardpoint_reader_read_bytes(r, "blob", got, sizeof got, &len), SHARDPOINT_ECHECKSUM, "'blob'");
    assert_int_equal(len, 12345);
    shardpoint_reader_free(r);
    free(data);
}

/* Checksums are per block (64 KiB): damage in one block fails the reads that touch it, only those. */
static void test_damage_is_confined_to_its_block(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "blocks");
    const tdesc big = {"big", SHARDPOINT_DTYPE_U8, 2, {3, 1u << 20}, 7}; /* one row per block */
    SP_OK(save_whole(dir, &big, 1, NULL));
    uint64_t offset;
    char *data = data_file_of(dir, "big", &offset, NULL);
    assert_int_equal(flip_byte(data, (long long)(offset + (2u << 20) + 5)), 0); /* row 2 */
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    unsigned char *dst = malloc(3u << 20);
    const uint64_t rows01[2] = {2, 1u << 20}, row2_off[2] = {2, 0}, row2[2] = {1, 1u << 20};
    SP_OK(shardpoint_reader_read_tensor(r, "big", big.dtype, 2, ZEROS, rows01, dst, NULL));
    assert_int_equal(check_box(&big, ZEROS, rows01, dst, NULL), 0);
    SP_FAILS(shardpoint_reader_read_tensor(r, "big", big.dtype, 2, row2_off, row2, dst, NULL), SHARDPOINT_ECHECKSUM,
             "bytes");
    /* a strided box that crosses into the damaged block fails too */
    const uint64_t band_off[2] = {1, 3}, band[2] = {2, 10};
    SP_FAILS(shardpoint_reader_read_tensor(r, "big", big.dtype, 2, band_off, band, dst, NULL), SHARDPOINT_ECHECKSUM,
             "'big'");
    shardpoint_reader_free(r);
    free(dst), free(data), free(dir);
}

static void test_flipped_compressed_byte(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "deflated");
    SP_OK(write_standard(dir, 6));
    uint64_t offset, length;
    char *data = data_file_of(dir, "v", &offset, &length);
    assert_int_equal(flip_byte(data, (long long)(offset + length / 2)), 0);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_ECHECKSUM, "'v'");
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_ECHECKSUM, "'v'");
    assert_int_equal(load_whole_mismatches(r, &W, NULL), 0);
    shardpoint_reader_free(r);
    free(data), free(dir);
}

static void test_truncated_data_file(void **state) {
    fixture *f = *state;
    uint64_t offset;
    char *data = data_file_of(f->dir, "v", &offset, NULL);
    long long size = file_size(data);
    assert_int_equal(truncate(data, size - 1), 0);
    const char *name = strrchr(data, '/') + 1;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_ETRUNCATED, name);
    shardpoint_reader_free(r);
    /* a fresh reader: a load of an entry at the end of the file fails the same way */
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    unsigned char got[300];
    uint64_t len;
    SP_FAILS(shardpoint_reader_read_bytes(r, "blob", got, sizeof got, &len), SHARDPOINT_ETRUNCATED, name);
    shardpoint_reader_free(r);
    /* cut to nothing */
    assert_int_equal(truncate(data, 0), 0);
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    int16_t v[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, v, NULL), SHARDPOINT_ETRUNCATED, name);
    shardpoint_reader_free(r);
    free(data);
}

static void test_missing_data_file(void **state) {
    fixture *f = *state;
    char *data = data_file_of(f->dir, "v", NULL, NULL);
    assert_int_equal(unlink(data), 0);
    const char *name = strrchr(data, '/') + 1;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_ENOTFOUND, name);
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_ENOTFOUND, name);
    shardpoint_reader_free(r);
    free(data);
}

/* A data file replaced by a symbolic link (to an intact copy elsewhere) is refused. */
static void test_data_file_symlink(void **state) {
    fixture *f = *state;
    char *data = data_file_of(f->dir, "v", NULL, NULL);
    char *elsewhere = path_join(f->tmp, "elsewhere.bin");
    assert_int_equal(rename(data, elsewhere), 0);
    assert_int_equal(symlink(elsewhere, data), 0);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_EPATH,
             "symbolic link");
    shardpoint_reader_free(r);
    free(data), free(elsewhere);
}

/* A data file replaced by a directory is not read as one. */
static void test_data_file_not_a_regular_file(void **state) {
    fixture *f = *state;
    char *data = data_file_of(f->dir, "v", NULL, NULL);
    assert_int_equal(unlink(data), 0);
    assert_int_equal(mkdir(data, 0755), 0);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_EFORMAT,
             "not a regular file");
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_EFORMAT, "not a regular file");
    shardpoint_reader_free(r);
    free(data);
}

/* --- names with NUL bytes (Cap'n Proto texts carry their length) ------------------------------ */

static void test_nul_in_data_file_name(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "nul_file_name");
    /* cut at the NUL the name would be a harmless "x": the whole name must be judged */
    open_fails(f->dir, SHARDPOINT_EPATH, "x\\0/../../outside");
}

static void test_nul_in_fqn_is_not_a_duplicate(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "nul_fqn");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "NUL");
    assert_null(strstr(shardpoint_last_error(), "twice"));
}

/* --- checksums and extents ----------------------------------------------------------------------- */

/* Load (which checks blocks) and verify (which saw crc32 too) must not disagree: open refuses. */
static void test_block_crcs_disagree_with_crc32(void **state) {
    fixture *f = *state;
    run_bad_metadata(f->dir, "crc_disagree");
    open_fails(f->dir, SHARDPOINT_EFORMAT, "disagree");
}

static void test_bytes_after_zlib_stream(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "deflated");
    SP_OK(write_standard(dir, 6));
    run_bad_metadata(dir, "deflate_trailing");
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    unsigned char got[300];
    uint64_t len = 0;
    int16_t v[100];
    int rc_blob = shardpoint_reader_read_bytes(r, "blob", got, sizeof got, &len);
    int rc_v = shardpoint_reader_read_tensor(r, "v", V.dtype, 1, ZEROS, V.shape, v, NULL);
    /* the first compressed extent in metadata order is blob's */
    assert_int_equal(rc_blob, SHARDPOINT_EFORMAT);
    assert_int_equal(rc_v, SHARDPOINT_OK);
    SP_FAILS(shardpoint_reader_verify(r), SHARDPOINT_EFORMAT, "'blob'");
    shardpoint_reader_free(r);
    free(dir);
}

/* A data file may be longer than recorded (the metadata bounds the extents); it loads and verifies. */
static void test_data_file_longer_than_recorded(void **state) {
    fixture *f = *state;
    char *data = data_file_of(f->dir, "v", NULL, NULL);
    FILE *fp = fopen(data, "ab");
    assert_non_null(fp);
    assert_int_equal(fwrite("tail", 1, 4, fp), 4);
    fclose(fp);
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    assert_int_equal(load_whole_mismatches(r, &W, NULL), 0);
    assert_int_equal(load_whole_mismatches(r, &V, NULL), 0);
    SP_OK(shardpoint_reader_verify(r));
    shardpoint_reader_free(r);
    free(data);
}

/* --- verify_each: every bad extent, in metadata order ------------------------------------------- */

typedef struct extent_ref {
    uint64_t entry, chunk;
    char fqn[16];
    char file[128];
    uint64_t offset, length;
} extent_ref;

typedef struct report_log {
    int count, stop_after;
    extent_ref seen[8];
    int32_t codes[8];
    char messages[8][512];
} report_log;

static int log_problem(void *user, const shardpoint_verify_problem *p) {
    report_log *log = user;
    if (log->count < 8) {
        extent_ref *e = &log->seen[log->count];
        snprintf(e->fqn, sizeof e->fqn, "%s", p->fqn);
        snprintf(e->file, sizeof e->file, "%s", p->file);
        e->chunk = p->chunk;
        e->offset = p->file_offset;
        e->length = p->length;
        log->codes[log->count] = p->code;
        snprintf(log->messages[log->count], sizeof log->messages[0], "%s", p->message);
    }
    ++log->count;
    return log->stop_after > 0 && log->count >= log->stop_after;
}

/* Every extent of the checkpoint, in metadata order. */
static size_t list_extents(const char *dir, extent_ref *out, size_t max) {
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, dir, NULL));
    uint64_t entries, n = 0;
    SP_OK(shardpoint_reader_entry_count(r, &entries));
    for (uint64_t i = 0; i < entries; ++i) {
        shardpoint_entry_info ei;
        SP_OK(shardpoint_reader_entry_info(r, i, &ei));
        for (uint64_t c = 0; c < ei.chunk_count && n < max; ++c, ++n) {
            shardpoint_chunk_info ci;
            SP_OK(shardpoint_reader_chunk_info(r, i, c, &ci));
            out[n].entry = i;
            out[n].chunk = c;
            snprintf(out[n].fqn, sizeof out[n].fqn, "%s", ei.fqn);
            snprintf(out[n].file, sizeof out[n].file, "%s", ci.file);
            out[n].offset = ci.file_offset;
            out[n].length = ci.stored_length;
        }
    }
    shardpoint_reader_free(r);
    return (size_t)n;
}

static void test_verify_each_reports_every_bad_extent(void **state) {
    fixture *f = *state;
    extent_ref ext[8];
    size_t n = list_extents(f->dir, ext, 8);
    assert_int_equal(n, 4); /* blob, v, w#0, w#1: one data file */
    /* by position in the file: damage the first two, cut the last one's final byte */
    size_t order[4] = {0, 1, 2, 3};
    for (size_t i = 0; i < 4; ++i)
        for (size_t j = i + 1; j < 4; ++j)
            if (ext[order[j]].offset < ext[order[i]].offset) {
                size_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    char *data = path_join(f->dir, ext[0].file);
    assert_int_equal(flip_byte(data, (long long)ext[order[0]].offset + 1), 0);
    assert_int_equal(flip_byte(data, (long long)(ext[order[1]].offset + ext[order[1]].length - 1)), 0);
    const uint64_t last_end = ext[order[3]].offset + ext[order[3]].length;
    assert_int_equal(file_size(data), (long long)last_end);
    assert_int_equal(truncate(data, (off_t)(last_end - 1)), 0);

    /* expected: the three bad extents in metadata order */
    int bad[4] = {0};
    bad[order[0]] = SHARDPOINT_ECHECKSUM, bad[order[1]] = SHARDPOINT_ECHECKSUM, bad[order[3]] = SHARDPOINT_ETRUNCATED;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    report_log log = {0};
    uint64_t problems = 0;
    int first_code = 0;
    for (size_t k = 0; k < 4 && !first_code; ++k) first_code = bad[k];
    SP_FAILS(shardpoint_reader_verify_each(r, log_problem, &log, &problems), first_code, "2 more bad extents");
    assert_int_equal(problems, 3);
    assert_int_equal(log.count, 3);
    int seen = 0;
    for (size_t k = 0; k < 4; ++k) {
        if (!bad[k]) continue;
        const extent_ref *got = &log.seen[seen];
        assert_string_equal(got->fqn, ext[k].fqn);
        assert_int_equal(got->chunk, ext[k].chunk);
        assert_string_equal(got->file, ext[k].file);
        assert_int_equal(log.codes[seen], bad[k]);
        if (bad[k] == SHARDPOINT_ECHECKSUM) {
            /* extents shorter than a block: the first bad block is the whole extent */
            assert_int_equal(got->offset, ext[k].offset);
            assert_int_equal(got->length, ext[k].length);
            assert_non_null(strstr(log.messages[seen], "1 of 1 blocks bad"));
        } else {
            assert_int_equal(got->offset, last_end - 1); /* the missing byte */
            assert_int_equal(got->length, 1);
        }
        assert_non_null(strstr(log.messages[seen], ext[k].fqn));
        ++seen;
    }
    /* verify (first error) reports the first of them with the same code */
    SP_FAILS(shardpoint_reader_verify(r), first_code, "2 more bad extents");

    /* a callback returning non-zero stops the reports */
    report_log once = {0};
    once.stop_after = 1;
    problems = 0;
    SP_FAILS(shardpoint_reader_verify_each(r, log_problem, &once, &problems), first_code, NULL);
    assert_int_equal(once.count, 1);
    assert_int_equal(problems, 3);
    /* no callback: the count alone */
    SP_FAILS(shardpoint_reader_verify_each(r, NULL, NULL, &problems), first_code, NULL);
    assert_int_equal(problems, 3);
    shardpoint_reader_free(r);
    free(data);
}

static void test_verify_each_of_a_sound_checkpoint(void **state) {
    fixture *f = *state;
    shardpoint_reader *r = NULL;
    SP_OK(shardpoint_reader_open(&r, f->dir, NULL));
    report_log log = {0};
    uint64_t problems = 99;
    SP_OK(shardpoint_reader_verify_each(r, log_problem, &log, &problems));
    assert_int_equal(problems, 0);
    assert_int_equal(log.count, 0);
    SP_FAILS(shardpoint_reader_verify_each(NULL, NULL, NULL, NULL), SHARDPOINT_EINVAL, "reader");
    shardpoint_reader_free(r);
}

/* --- an overwrite save under an open reader -------------------------------------------------------- */

static int save_v(const char *dir, uint32_t seed, uint32_t flags) {
    tdesc v = V;
    v.seed = seed;
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = flags;
    return save_whole(dir, &v, 1, &o);
}

static void test_open_reader_keeps_reading_after_overwrite(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "overwritten");
    SP_OK(save_v(dir, 21, 0));
    shardpoint_reader *old = NULL;
    SP_OK(shardpoint_reader_open(&old, dir, NULL));
    SP_OK(save_v(dir, 22, SHARDPOINT_SAVE_OVERWRITE)); /* deletes the old data file */
    tdesc v_old = V, v_new = V;
    v_old.seed = 21, v_new.seed = 22;
    assert_int_equal(load_whole_mismatches(old, &v_old, NULL), 0); /* the old values, exactly */
    SP_OK(shardpoint_reader_verify(old));
    shardpoint_reader *now = NULL;
    SP_OK(shardpoint_reader_open(&now, dir, NULL));
    assert_int_equal(load_whole_mismatches(now, &v_new, NULL), 0);
    shardpoint_reader_free(now);
    shardpoint_reader_free(old);
    free(dir);
}

/* A data file that could not be opened with the reader (here: briefly moved away) is opened when
 * read; gone by then because a save replaced the checkpoint, the error says so. */
static void test_replaced_checkpoint_is_named_in_the_error(void **state) {
    fixture *f = *state;
    char *dir = path_join(f->tmp, "replaced");
    SP_OK(save_v(dir, 31, 0));
    char *data = data_file_of(dir, "v", NULL, NULL);
    char *aside = path_join(f->tmp, "aside.bin");
    assert_int_equal(rename(data, aside), 0);
    shardpoint_reader *old = NULL;
    SP_OK(shardpoint_reader_open(&old, dir, NULL)); /* a missing data file does not fail open */
    assert_int_equal(rename(aside, data), 0);
    SP_OK(save_v(dir, 32, SHARDPOINT_SAVE_OVERWRITE));
    int16_t got[100];
    SP_FAILS(shardpoint_reader_read_tensor(old, "v", V.dtype, 1, ZEROS, V.shape, got, NULL), SHARDPOINT_ENOTFOUND,
             "was replaced by another save after this reader opened it");
    shardpoint_reader_free(old);
    free(data), free(aside), free(dir);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        T(test_baseline_is_valid),
        T(test_missing_checkpoint),
        T(test_metadata_is_a_directory),
        T(test_truncated_metadata_header),
        T(test_truncated_metadata_body),
        T(test_garbage_metadata),
        T(test_garbage_message_body),
        T(test_metadata_body_length_not_words),
        T(test_metadata_trailing_bytes),
        T(test_flipped_metadata_body_byte),
        T(test_flipped_metadata_header_byte),
        T(test_unknown_major_version),
        T(test_path_leaving_directory),
        T(test_absolute_path),
        T(test_extent_beyond_file),
        T(test_extent_names_missing_file_index),
        T(test_chunk_outside_shape),
        T(test_overlapping_chunks),
        T(test_too_many_dims_in_metadata),
        T(test_unknown_dtype_in_metadata),
        T(test_duplicate_entry),
        T(test_flipped_data_byte),
        T(test_flipped_blob_byte),
        T(test_damage_is_confined_to_its_block),
        T(test_flipped_compressed_byte),
        T(test_truncated_data_file),
        T(test_missing_data_file),
        T(test_data_file_symlink),
        T(test_data_file_not_a_regular_file),
        T(test_nul_in_data_file_name),
        T(test_nul_in_fqn_is_not_a_duplicate),
        T(test_block_crcs_disagree_with_crc32),
        T(test_bytes_after_zlib_stream),
        T(test_data_file_longer_than_recorded),
        T(test_verify_each_reports_every_bad_extent),
        T(test_verify_each_of_a_sound_checkpoint),
        T(test_open_reader_keeps_reading_after_overwrite),
        T(test_replaced_checkpoint_is_named_in_the_error),
    };
    return cmocka_run_group_tests_name("c_corrupt", tests, NULL, NULL);
}
