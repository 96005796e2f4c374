#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- assertions ---------------------------------------------------------------------------- */

void sp_check_failure(int rc, int want, const char *needle, const char *expr, const char *file, int line) {
    const char *message = shardpoint_last_error();
    if (rc != want)
        fail_msg("%s:%d: %s returned %s (%s), expected %s", file, line, expr, shardpoint_error_name(rc),
                 rc ? message : "", shardpoint_error_name(want));
    if (shardpoint_last_error_code() != want)
        fail_msg("%s:%d: %s: last_error_code is %s, expected %s", file, line, expr,
                 shardpoint_error_name(shardpoint_last_error_code()), shardpoint_error_name(want));
    if (message == NULL) fail_msg("%s:%d: %s: shardpoint_last_error() is NULL", file, line, expr);
    if (strlen(message) < 8) fail_msg("%s:%d: %s: uninformative message '%s'", file, line, expr, message);
    if (needle && strstr(message, needle) == NULL)
        fail_msg("%s:%d: %s: message '%s' does not mention '%s'", file, line, expr, message, needle);
}

/* --- temporary directories and paths -------------------------------------------------------- */

char *tmp_dir_new(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *path = malloc(strlen(base) + strlen(tag) + 32);
    if (!path) return NULL;
    sprintf(path, "%s/sp-c-%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void tmp_dir_remove(char *path) {
    if (!path) return;
    if (!getenv("SP_TEST_KEEP")) nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

int dir_setup(void **state) {
    *state = tmp_dir_new("t");
    return *state ? 0 : -1;
}

int dir_teardown(void **state) {
    tmp_dir_remove(*state);
    *state = NULL;
    return 0;
}

char *path_join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p) sprintf(p, "%s/%s", a, b);
    return p;
}

/* --- files ---------------------------------------------------------------------------------- */

unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = len ? fwrite(data, 1, len, f) : 0;
    return (fclose(f) == 0 && n == len) ? 0 : -1;
}

long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int file_exists(const char *path) { return access(path, F_OK) == 0; }

int flip_byte(const char *path, long long offset) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    unsigned char b;
    int ok = pread(fd, &b, 1, offset) == 1;
    b ^= 0xffu;
    ok = ok && pwrite(fd, &b, 1, offset) == 1;
    close(fd);
    return ok ? 0 : -1;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int list_files(const char *dir, char ***names, size_t *count) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            *names = realloc(*names, cap * sizeof **names);
        }
        (*names)[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, compare_names);
    return 0;
}

void free_names(char **names, size_t count) {
    for (size_t i = 0; i < count; ++i) free(names[i]);
    free(names);
}

int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++n;
    closedir(d);
    return n;
}

long long data_files_total(const char *dir, int *count) {
    char **names;
    size_t n;
    list_files(dir, &names, &n);
    long long total = 0;
    *count = 0;
    for (size_t i = 0; i < n; ++i) {
        size_t len = strlen(names[i]);
        if (strncmp(names[i], "data-", 5) == 0 && len > 4 && strcmp(names[i] + len - 4, ".bin") == 0) {
            char *p = path_join(dir, names[i]);
            total += file_size(p);
            free(p);
            ++*count;
        }
    }
    free_names(names, n);
    return total;
}

/* --- the generator ------------------------------------------------------------------------- */

void gen_fill(void *dst, uint64_t n, uint64_t first, uint32_t seed, int is_bool) {
    unsigned char *p = dst;
    for (uint64_t i = 0; i < n; ++i) p[i] = gen_byte(first + i, seed, is_bool);
}

uint64_t gen_check(const void *buf, uint64_t n, uint64_t first, uint32_t seed, int is_bool) {
    const unsigned char *p = buf;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; ++i) bad += p[i] != gen_byte(first + i, seed, is_bool);
    return bad;
}

uint64_t numel_of(uint32_t ndim, const uint64_t *sizes) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
}

uint64_t tdesc_nbytes(const tdesc *t) { return numel_of(t->ndim, t->shape) * shardpoint_dtype_size(t->dtype); }

/* Visits every element of the box in C order: `global` is its C-order index in the whole tensor,
 * `mem` its element offset from the box's first element under `strides`. */
static uint64_t walk_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes, const int64_t *strides,
                         unsigned char *out, const unsigned char *in) {
    const uint32_t nd = t->ndim;
    const uint64_t isz = shardpoint_dtype_size(t->dtype);
    const int is_bool = t->dtype == SHARDPOINT_DTYPE_BOOL;
    uint64_t count = numel_of(nd, sizes);
    int64_t st[SHARDPOINT_MAX_NDIM];
    uint64_t gstride[SHARDPOINT_MAX_NDIM], idx[SHARDPOINT_MAX_NDIM];
    int64_t acc = 1;
    uint64_t gacc = 1;
    for (uint32_t d = nd; d-- > 0;) {
        st[d] = strides ? strides[d] : acc;
        acc *= (int64_t)sizes[d];
        gstride[d] = gacc;
        gacc *= t->shape[d];
        idx[d] = 0;
    }
    uint64_t bad = 0;
    for (uint64_t e = 0; e < count; ++e) {
        uint64_t g = 0;
        int64_t m = 0;
        for (uint32_t d = 0; d < nd; ++d) {
            g += (offsets[d] + idx[d]) * gstride[d];
            m += (int64_t)idx[d] * st[d];
        }
        if (out) gen_fill(out + m * (int64_t)isz, isz, g * isz, t->seed, is_bool);
        else bad += gen_check(in + m * (int64_t)isz, isz, g * isz, t->seed, is_bool);
        for (uint32_t d = nd; d-- > 0;) {
            if (++idx[d] < sizes[d]) break;
            idx[d] = 0;
        }
    }
    return bad;
}

void fill_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes, void *base, const int64_t *strides) {
    walk_box(t, offsets, sizes, strides, base, NULL);
}

uint64_t check_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes, const void *base,
                   const int64_t *strides) {
    return walk_box(t, offsets, sizes, strides, NULL, base);
}

void *make_box(const tdesc *t, const uint64_t *offsets, const uint64_t *sizes) {
    uint64_t n = numel_of(t->ndim, sizes) * shardpoint_dtype_size(t->dtype);
    void *p = malloc(n ? n : 1);
    if (p) fill_box(t, offsets, sizes, p, NULL);
    return p;
}

/* --- simple save / load of whole tensors ----------------------------------------------------- */

int save_whole(const char *dir, const tdesc *ts, size_t count, const shardpoint_save_options *options) {
    static const uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    shardpoint_save *save = NULL;
    int rc = shardpoint_save_new(&save, dir, NULL, options);
    void **bufs = calloc(count ? count : 1, sizeof *bufs);
    for (size_t i = 0; rc == 0 && i < count; ++i) {
        bufs[i] = make_box(&ts[i], zeros, ts[i].shape);
        rc = shardpoint_save_add_tensor(save, ts[i].fqn, ts[i].dtype, ts[i].ndim, ts[i].shape, zeros, ts[i].shape,
                                        bufs[i], NULL);
    }
    if (rc == 0) rc = shardpoint_save_commit(save);
    shardpoint_save_free(save);
    for (size_t i = 0; i < count; ++i) free(bufs[i]);
    free(bufs);
    return rc;
}

uint64_t load_whole_mismatches(shardpoint_reader *reader, const tdesc *t, int *rc) {
    static const uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    uint64_t n = tdesc_nbytes(t);
    unsigned char *buf = malloc(n ? n : 1);
    memset(buf, 0xa5, n ? n : 1);
    int r = shardpoint_reader_read_tensor(reader, t->fqn, t->dtype, t->ndim, zeros, t->shape, buf, NULL);
    if (rc) *rc = r;
    uint64_t bad = r == 0 ? check_box(t, zeros, t->shape, buf, NULL) : UINT64_MAX;
    free(buf);
    return bad;
}

int rank_note(rank_result *res, int rc, const char *what) {
    if (rc != 0 && res->rc == 0) {
        res->rc = rc;
        snprintf(res->message, sizeof res->message, "%s: %s: %s", what, shardpoint_error_name(rc), shardpoint_last_error());
    }
    return rc;
}

typedef struct rank_thread {
    int rank, world;
    shardpoint_comm *comm;
    rank_fn fn;
    void *arg;
    rank_result *res;
} rank_thread;

static void *rank_main(void *p) {
    rank_thread *t = p;
    t->fn(t->rank, t->world, t->comm, t->arg, t->res);
    return NULL;
}

int run_ranks(int world, rank_fn fn, void *arg, rank_result *results) {
    sp_group *g = group_new(world);
    rank_thread *threads = calloc((size_t)world, sizeof *threads);
    pthread_t *ids = calloc((size_t)world, sizeof *ids);
    int ok = g && threads && ids;
    memset(results, 0, (size_t)world * sizeof *results);
    for (int r = 0; ok && r < world; ++r) {
        threads[r] = (rank_thread){r, world, NULL, fn, arg, &results[r]};
        ok = group_comm(g, r, &threads[r].comm) == 0;
    }
    for (int r = 0; ok && r < world; ++r)
        if (pthread_create(&ids[r], NULL, rank_main, &threads[r]) != 0) {
            /* The started ranks would wait forever for this one in their first collective. */
            fprintf(stderr, "run_ranks: pthread_create failed\n");
            abort();
        }
    for (int r = 0; ok && r < world; ++r) pthread_join(ids[r], NULL);
    for (int r = 0; threads && r < world; ++r) shardpoint_comm_free(threads[r].comm);
    free(ids);
    free(threads);
    group_free(g);
    return ok ? 0 : -1;
}

/* --- snapshots of a checkpoint directory ---------------------------------------------------- */

void take_snapshot(const char *dir, snapshot *s) {
    char *meta = path_join(dir, "shardpoint.meta");
    s->meta = read_file(meta, &s->meta_len);
    assert_non_null(s->meta);
    free(meta);
    list_files(dir, &s->names, &s->count);
}

void assert_unchanged(const char *dir, snapshot *before) {
    snapshot now;
    take_snapshot(dir, &now);
    assert_int_equal(now.meta_len, before->meta_len);
    assert_memory_equal(now.meta, before->meta, now.meta_len);
    for (size_t i = 0; i < now.count; ++i) {
        int known = 0;
        for (size_t k = 0; k < before->count; ++k) known |= strcmp(now.names[i], before->names[k]) == 0;
        if (!known) fail_msg("'%s' was left in the checkpoint directory", now.names[i]);
    }
    assert_int_equal(now.count, before->count);
    free(now.meta);
    free_names(now.names, now.count);
}

void free_snapshot(snapshot *s) {
    free(s->meta);
    free_names(s->names, s->count);
}
