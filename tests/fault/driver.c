/* The fault harness's program under test: saves, checks and describes one small deterministic
 * checkpoint through the C ABI only.
 *
 *   fault_driver save DIR SEED [overwrite] [nofsync] [deflate|zstd] [ranks=N] [phases]
 *       prints {"codes":[...],"names":[...],"message":"..."}; exit 0 when every rank succeeded.
 *       With `phases` the ranks are a host driving the storage-layer phases (shardpoint_writer_*)
 *       with collectives of its own, as DCP does: items planned without data, bound one at a
 *       time and each written in its own batch (shardpoint_writer_write_bound).
 *   fault_driver check DIR SEED
 *       exit 0 when DIR holds the checkpoint of SEED with every byte exact, 1 otherwise
 *   fault_driver state DIR
 *       prints {"open":"<code name>","seed":N|null,"exact":bool,"meta_size":N|null,
 *               "files":[...],"referenced":[...],"debris":[...]}
 *   fault_driver gc DIR [dry]
 *       prints {"code":"<name>","removed":[...],"files":N,"bytes":N}; exit 0 on success
 *
 * The checkpoint of SEED (on 1 or more ranks): "layers.0.w" f32 [12, 200] split by rows across
 * ranks, "layers.0.b" i64 [30] replicated on every rank (written once), "layers.1.t" f64 [6, 10]
 * given through transposing strides by the last rank, "optim.state" a 300-byte blob from rank 0,
 * and the user metadata "seed". Values come from a small generator seeded with SEED and the
 * entry, so any two seeds differ in every entry. */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shardpoint.h"
#include "thread_group.h"

#define W_ROWS 12
#define W_COLS 200 /* a rank's rows (4800 bytes) exceed the alignment: the aligned path; the rest is packed */
#define B_LEN 30
#define T_ROWS 6
#define T_COLS 10
#define BLOB_LEN 300
#define MAX_RANKS 8

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static uint64_t value_bits(uint64_t seed, uint64_t entry, uint64_t i) { return mix(seed * 1000003u + entry * 7919u + mix(i)); }

typedef struct model {
    float w[W_ROWS][W_COLS];
    int64_t b[B_LEN];
    double t[T_ROWS][T_COLS];  /* the logical tensor */
    double t_storage[T_COLS][T_ROWS]; /* the same values, stored transposed (as the saver hands them) */
    unsigned char blob[BLOB_LEN];
} model;

static void make_model(model *m, uint64_t seed) {
    for (int r = 0; r < W_ROWS; ++r)
        for (int c = 0; c < W_COLS; ++c) m->w[r][c] = (float)(int32_t)(value_bits(seed, 1, (uint64_t)(r * W_COLS + c)) >> 40) / 1024.0f;
    for (int i = 0; i < B_LEN; ++i) m->b[i] = (int64_t)value_bits(seed, 2, (uint64_t)i);
    for (int r = 0; r < T_ROWS; ++r)
        for (int c = 0; c < T_COLS; ++c) {
            m->t[r][c] = (double)(int64_t)value_bits(seed, 3, (uint64_t)(r * T_COLS + c)) / 3.0;
            m->t_storage[c][r] = m->t[r][c];
        }
    for (int i = 0; i < BLOB_LEN; ++i) m->blob[i] = (unsigned char)value_bits(seed, 4, (uint64_t)i);
}

/* Ranks are threads of this process talking through tests/c/thread_group.c's communicator. */

/* ---- save ----------------------------------------------------------------------------------- */

typedef struct save_job {
    const char *dir;
    const model *m;
    uint64_t seed;
    uint32_t flags;
    int compression; /* 1: deflate stream; 2: zstd blocks, shuffled (format 2) */
    int rank, ranks;
    sp_group *g;
    struct host *host; /* with `phases`: the host's collectives */
    int code;
    char message[1024];
} save_job;

static void set_compression(shardpoint_save_options *opts, int compression) {
    if (compression == 1) opts->compression_level = 1;
    if (compression == 2) {
        opts->codec = SHARDPOINT_CODEC_ZSTD;
        opts->filters = SHARDPOINT_FILTER_SHUFFLE;
    }
}

static int add_entries(shardpoint_save *s, const save_job *j) {
    const model *m = j->m;
    const uint64_t w_shape[2] = {W_ROWS, W_COLS};
    const uint64_t row0 = (uint64_t)(W_ROWS * j->rank / j->ranks), row1 = (uint64_t)(W_ROWS * (j->rank + 1) / j->ranks);
    const uint64_t w_offs[2] = {row0, 0}, w_sizes[2] = {row1 - row0, W_COLS};
    int rc = shardpoint_save_add_tensor(s, "layers.0.w", SHARDPOINT_DTYPE_F32, 2, w_shape, w_offs, w_sizes, m->w[row0], NULL);
    const uint64_t b_shape[1] = {B_LEN}, b_offs[1] = {0};
    if (rc == 0) rc = shardpoint_save_add_tensor(s, "layers.0.b", SHARDPOINT_DTYPE_I64, 1, b_shape, b_offs, b_shape, m->b, NULL);
    if (rc == 0 && j->rank == j->ranks - 1) {
        const uint64_t t_shape[2] = {T_ROWS, T_COLS}, t_offs[2] = {0, 0};
        const int64_t t_strides[2] = {1, T_ROWS}; /* element (r, c) is at t_storage[c][r] */
        rc = shardpoint_save_add_tensor(s, "layers.1.t", SHARDPOINT_DTYPE_F64, 2, t_shape, t_offs, t_shape,
                                        m->t_storage, t_strides);
    }
    if (rc == 0 && j->rank == 0) rc = shardpoint_save_add_bytes(s, "optim.state", m->blob, BLOB_LEN);
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)j->seed);
    if (rc == 0) rc = shardpoint_save_set_metadata(s, "seed", seed_text);
    return rc;
}

static void phased_save(save_job *j); /* below */

static void *run_save(void *arg) {
    save_job *j = arg;
    if (j->host) {
        phased_save(j);
        return NULL;
    }
    shardpoint_comm *comm = NULL;
    shardpoint_save *s = NULL;
    int rc = j->ranks > 1 ? group_comm(j->g, j->rank, &comm) : 0;
    shardpoint_save_options opts = SHARDPOINT_SAVE_OPTIONS_INIT;
    opts.flags = j->flags;
    set_compression(&opts, j->compression);
    opts.io_threads = 1; /* one I/O thread per rank: the order of calls is the same on every run */
    if (rc == 0) rc = shardpoint_save_new(&s, j->dir, comm, &opts);
    if (rc == 0) rc = add_entries(s, j);
    if (rc == 0) rc = shardpoint_save_commit(s);
    j->code = rc;
    if (rc != 0) snprintf(j->message, sizeof j->message, "%s", shardpoint_last_error());
    shardpoint_save_free(s);
    shardpoint_comm_free(comm);
    return NULL;
}

/* ---- save through the storage-layer phases ------------------------------------------------- */

/* The host's own collectives between the rank threads: slots and a barrier. */
typedef struct host {
    pthread_barrier_t barrier;
    const void *bufs[MAX_RANKS];
    uint64_t lens[MAX_RANKS];
    int codes[MAX_RANKS];
} host;

/* Every rank learns whether some rank failed: its own code, else ERANK if another failed. */
static int agree(host *h, int rank, int ranks, int rc) {
    h->codes[rank] = rc;
    pthread_barrier_wait(&h->barrier);
    int any = 0;
    for (int r = 0; r < ranks; ++r) any |= h->codes[r] != 0;
    pthread_barrier_wait(&h->barrier); /* nobody writes a code before everyone has read them */
    return rc != 0 ? rc : any ? SHARDPOINT_ERANK : 0;
}

/* The items of add_entries, planned without data, in the same order; `data`/`strides` get each
 * item's memory (item k is bound with data[k]). Returns the item count or a negative code. */
static int plan_entries(shardpoint_writer *w, const save_job *j, const void **data, const int64_t **strides,
                        uint64_t *blob_len) {
    const model *m = j->m;
    static const int64_t t_strides[2] = {1, T_ROWS};
    const uint64_t w_shape[2] = {W_ROWS, W_COLS};
    const uint64_t row0 = (uint64_t)(W_ROWS * j->rank / j->ranks), row1 = (uint64_t)(W_ROWS * (j->rank + 1) / j->ranks);
    const uint64_t w_offs[2] = {row0, 0}, w_sizes[2] = {row1 - row0, W_COLS};
    int n = 0;
    int rc = shardpoint_writer_plan_tensor(w, "layers.0.w", SHARDPOINT_DTYPE_F32, 2, w_shape, w_offs, w_sizes);
    data[n] = m->w[row0], strides[n++] = NULL;
    const uint64_t b_shape[1] = {B_LEN}, b_offs[1] = {0};
    if (rc == 0) rc = shardpoint_writer_plan_tensor(w, "layers.0.b", SHARDPOINT_DTYPE_I64, 1, b_shape, b_offs, b_shape);
    data[n] = m->b, strides[n++] = NULL;
    if (rc == 0 && j->rank == j->ranks - 1) {
        const uint64_t t_shape[2] = {T_ROWS, T_COLS}, t_offs[2] = {0, 0};
        rc = shardpoint_writer_plan_tensor(w, "layers.1.t", SHARDPOINT_DTYPE_F64, 2, t_shape, t_offs, t_shape);
        data[n] = m->t_storage, strides[n++] = t_strides;
    }
    if (rc == 0 && j->rank == 0) {
        rc = shardpoint_writer_plan_bytes(w, "optim.state");
        data[n] = m->blob, strides[n] = NULL, blob_len[n++] = BLOB_LEN;
    }
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)j->seed);
    if (rc == 0) rc = shardpoint_writer_set_metadata(w, "seed", seed_text);
    return rc != 0 ? rc : n;
}

static void phased_save(save_job *j) {
    host *h = j->host;
    const int rank = j->rank, ranks = j->ranks;
    shardpoint_save_options opts = SHARDPOINT_SAVE_OPTIONS_INIT;
    opts.flags = j->flags;
    set_compression(&opts, j->compression);
    opts.io_threads = 1;
    shardpoint_writer *w = NULL;
    const void *data[4] = {0};
    const int64_t *strides[4] = {0};
    uint64_t blob_len[4] = {0};
    int rc = shardpoint_writer_new(&w, j->dir, &opts);
    if (rc == 0) rc = shardpoint_writer_set_up(w, rank, ranks);
    if (rc == 0) {
        rc = plan_entries(w, j, data, strides, blob_len);
        if (rc > 0) rc = 0;
    }
    const void *plan = NULL;
    uint64_t plan_len = 0;
    if (rc == 0) rc = shardpoint_writer_local_plan(w, &plan, &plan_len);
    rc = agree(h, rank, ranks, rc);

    /* Gather the local plans on rank 0; it plans globally and hands out copies of the final plans. */
    h->bufs[rank] = plan, h->lens[rank] = plan_len;
    pthread_barrier_wait(&h->barrier);
    static void *finals[MAX_RANKS];
    static uint64_t final_lens[MAX_RANKS];
    if (rank == 0 && rc == 0) {
        rc = shardpoint_writer_global_plan(w, (uint32_t)ranks, h->bufs, h->lens);
        for (int r = 0; rc == 0 && r < ranks; ++r) {
            const void *fp;
            rc = shardpoint_writer_final_plan(w, (uint32_t)r, &fp, &final_lens[r]);
            if (rc == 0 && !(finals[r] = malloc(final_lens[r] ? final_lens[r] : 1))) rc = SHARDPOINT_ENOMEM;
            if (rc == 0) memcpy(finals[r], fp, final_lens[r]);
        }
    }
    pthread_barrier_wait(&h->barrier);
    rc = agree(h, rank, ranks, rc);

    /* Bind and write one item per batch, then the rest (nothing) and the results. */
    const void *results = NULL;
    uint64_t results_len = 0;
    if (rc == 0) {
        const uint32_t *items;
        uint64_t count;
        rc = shardpoint_writer_assigned(w, finals[rank], final_lens[rank], &items, &count);
        for (uint64_t k = 0; rc == 0 && k < count; ++k) {
            uint32_t item = items[k];
            rc = blob_len[item] ? shardpoint_writer_bind_bytes(w, item, data[item], blob_len[item])
                                : shardpoint_writer_bind_tensor(w, item, data[item], strides[item]);
            if (rc == 0) rc = shardpoint_writer_write_bound(w, finals[rank], final_lens[rank]);
        }
        if (rc == 0) rc = shardpoint_writer_write(w, finals[rank], final_lens[rank], &results, &results_len);
    }
    rc = agree(h, rank, ranks, rc);

    /* Rank 0 finishes from the gathered results; every rank adopts its outcome. */
    h->bufs[rank] = results, h->lens[rank] = results_len;
    pthread_barrier_wait(&h->barrier);
    if (rank == 0 && rc == 0) rc = shardpoint_writer_finish(w, (uint32_t)ranks, h->bufs, h->lens);
    if (rank == 0) h->codes[0] = rc;
    pthread_barrier_wait(&h->barrier);
    if (rank != 0 && rc == 0) {
        int rc0 = h->codes[0];
        rc = rc0 == 0 || rc0 == SHARDPOINT_ENOTDURABLE ? rc0 : SHARDPOINT_ERANK;
    }
    j->code = rc;
    if (rc != 0) {
        snprintf(j->message, sizeof j->message, "%s", shardpoint_last_error());
        if (rc != SHARDPOINT_ENOTDURABLE) shardpoint_writer_abort(w);
    }
    pthread_barrier_wait(&h->barrier); /* the final plans are freed once nobody reads them */
    if (rank == 0)
        for (int r = 0; r < ranks; ++r) free(finals[r]), finals[r] = NULL;
    shardpoint_writer_free(w);
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static int cmd_save(const char *dir, uint64_t seed, int argc, char **argv) {
    uint32_t flags = 0;
    int compression = 0, ranks = 1, phases = 0;
    for (int k = 0; k < argc; ++k) {
        if (strcmp(argv[k], "overwrite") == 0) flags |= SHARDPOINT_SAVE_OVERWRITE;
        else if (strcmp(argv[k], "nofsync") == 0) flags |= SHARDPOINT_SAVE_NO_FSYNC;
        else if (strcmp(argv[k], "deflate") == 0) compression = 1;
        else if (strcmp(argv[k], "zstd") == 0) compression = 2;
        else if (strncmp(argv[k], "ranks=", 6) == 0) ranks = atoi(argv[k] + 6);
        else if (strcmp(argv[k], "phases") == 0) phases = 1;
        else {
            fprintf(stderr, "unknown save option '%s'\n", argv[k]);
            return 2;
        }
    }
    if (ranks < 1 || ranks > MAX_RANKS) return 2;
    static model m;
    make_model(&m, seed);
    sp_group *g = group_new(ranks);
    if (!g) return 1;
    static host h;
    if (phases) pthread_barrier_init(&h.barrier, NULL, (unsigned)ranks);
    save_job jobs[MAX_RANKS];
    pthread_t threads[MAX_RANKS];
    for (int r = 0; r < ranks; ++r) {
        jobs[r] = (save_job){dir, &m, seed, flags, compression, r, ranks, g, phases ? &h : NULL, 0, ""};
        if (ranks > 1) pthread_create(&threads[r], NULL, run_save, &jobs[r]);
    }
    if (ranks == 1) run_save(&jobs[0]);
    else
        for (int r = 0; r < ranks; ++r) pthread_join(threads[r], NULL);
    group_free(g);
    if (phases) pthread_barrier_destroy(&h.barrier);
    int failed = 0;
    printf("{\"codes\":[");
    for (int r = 0; r < ranks; ++r) printf("%s%d", r ? "," : "", jobs[r].code);
    printf("],\"names\":[");
    for (int r = 0; r < ranks; ++r) printf("%s\"%s\"", r ? "," : "", shardpoint_error_name(jobs[r].code));
    printf("],\"messages\":[");
    for (int r = 0; r < ranks; ++r) {
        if (r) putchar(',');
        print_json_string(jobs[r].message);
        failed |= jobs[r].code != 0;
    }
    printf("]}\n");
    return failed ? 1 : 0;
}

/* ---- check ---------------------------------------------------------------------------------- */

/* 0: exact; otherwise the code that failed (or SHARDPOINT_EINTERNAL for a value mismatch). */
static int verify_exact(shardpoint_reader *r, uint64_t seed) {
    static model want;
    make_model(&want, seed);
    static float w[W_ROWS][W_COLS];
    static int64_t b[B_LEN];
    static double t[T_ROWS][T_COLS];
    static unsigned char blob[BLOB_LEN + 16];
    uint64_t count = 0, len = 0;
    int rc = shardpoint_reader_entry_count(r, &count);
    if (rc == 0 && count != 4) return SHARDPOINT_EINTERNAL;
    const uint64_t zero[2] = {0, 0}, w_shape[2] = {W_ROWS, W_COLS}, b_shape[1] = {B_LEN}, t_shape[2] = {T_ROWS, T_COLS};
    if (rc == 0) rc = shardpoint_reader_read_tensor(r, "layers.0.w", SHARDPOINT_DTYPE_F32, 2, zero, w_shape, w, NULL);
    if (rc == 0) rc = shardpoint_reader_read_tensor(r, "layers.0.b", SHARDPOINT_DTYPE_I64, 1, zero, b_shape, b, NULL);
    if (rc == 0) rc = shardpoint_reader_read_tensor(r, "layers.1.t", SHARDPOINT_DTYPE_F64, 2, zero, t_shape, t, NULL);
    if (rc == 0) rc = shardpoint_reader_read_bytes(r, "optim.state", blob, sizeof blob, &len);
    if (rc == 0) rc = shardpoint_reader_verify(r);
    if (rc != 0) return rc;
    if (len != BLOB_LEN || memcmp(blob, want.blob, BLOB_LEN) != 0 || memcmp(w, want.w, sizeof w) != 0 ||
        memcmp(b, want.b, sizeof b) != 0 || memcmp(t, want.t, sizeof t) != 0)
        return SHARDPOINT_EINTERNAL;
    return 0;
}

static int read_seed(shardpoint_reader *r, uint64_t *seed) {
    const char *text = NULL;
    int rc = shardpoint_reader_metadata_get(r, "seed", &text);
    if (rc != 0) return rc;
    *seed = strtoull(text, NULL, 10);
    return 0;
}

static int cmd_check(const char *dir, uint64_t seed) {
    shardpoint_reader *r = NULL;
    uint64_t saved = 0;
    int rc = shardpoint_reader_open(&r, dir, NULL);
    if (rc == 0) rc = read_seed(r, &saved);
    if (rc == 0 && saved != seed) rc = SHARDPOINT_EINTERNAL;
    if (rc == 0) rc = verify_exact(r, seed);
    if (rc != 0) fprintf(stderr, "check %s seed %llu: %s %s\n", dir, (unsigned long long)seed, shardpoint_error_name(rc),
                         rc == SHARDPOINT_EINTERNAL ? "(values differ)" : shardpoint_last_error());
    shardpoint_reader_free(r);
    return rc == 0 ? 0 : 1;
}

/* ---- state ---------------------------------------------------------------------------------- */

static int is_hex32(const char *s) {
    for (int i = 0; i < 32; ++i)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* shardpoint's own names: data-<32 hex>-r<digits>.bin and shardpoint.meta.tmp-<32 hex>. */
static int own_name(const char *n) {
    size_t len = strlen(n);
    if (strncmp(n, "shardpoint.meta.tmp-", 20) == 0) return len == 52 && is_hex32(n + 20);
    if (strncmp(n, "data-", 5) != 0 || len < 5 + 32 + 2 + 1 + 4 || !is_hex32(n + 5) || strncmp(n + 37, "-r", 2) != 0) return 0;
    if (strcmp(n + len - 4, ".bin") != 0) return 0;
    for (size_t i = 39; i < len - 4; ++i)
        if (n[i] < '0' || n[i] > '9') return 0;
    return 1;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmd_state(const char *dir) {
    char *names[4096];
    size_t n = 0;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n < 4096)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
        closedir(d);
    }
    qsort(names, n, sizeof names[0], by_name);
    shardpoint_reader *r = NULL;
    int rc = shardpoint_reader_open(&r, dir, NULL);
    uint64_t seed = 0;
    int have_seed = rc == 0 && read_seed(r, &seed) == 0;
    int exact = have_seed && verify_exact(r, seed) == 0;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/shardpoint.meta", dir);
    long long meta_size = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    printf("{\"open\":\"%s\",\"seed\":", shardpoint_error_name(rc));
    if (have_seed) printf("%llu", (unsigned long long)seed);
    else printf("null");
    printf(",\"exact\":%s,\"meta_size\":", exact ? "true" : "false");
    if (meta_size >= 0) printf("%lld", meta_size);
    else printf("null");
    printf(",\"files\":[");
    for (size_t i = 0; i < n; ++i) {
        if (i) putchar(',');
        print_json_string(names[i]);
    }
    printf("],\"referenced\":[");
    uint64_t files = 0;
    shardpoint_storage_info info;
    if (rc == 0 && shardpoint_reader_storage_info(r, &info) == 0) files = info.file_count;
    for (uint64_t i = 0; i < files; ++i) {
        shardpoint_file_info f;
        if (shardpoint_reader_file_info(r, i, &f) != 0) continue;
        if (i) putchar(',');
        print_json_string(f.name);
    }
    /* Debris: shardpoint's own names that no loadable metadata references. */
    printf("],\"debris\":[");
    int first = 1;
    for (size_t i = 0; i < n; ++i) {
        if (!own_name(names[i])) continue;
        int referenced = 0;
        for (uint64_t k = 0; k < files && !referenced; ++k) {
            shardpoint_file_info f;
            referenced = shardpoint_reader_file_info(r, k, &f) == 0 && strcmp(f.name, names[i]) == 0;
        }
        if (referenced) continue;
        if (!first) putchar(',');
        first = 0;
        print_json_string(names[i]);
    }
    printf("]}\n");
    shardpoint_reader_free(r);
    for (size_t i = 0; i < n; ++i) free(names[i]);
    return 0;
}

/* ---- gc ------------------------------------------------------------------------------------- */

typedef struct gc_list {
    int count;
} gc_list;

static int on_garbage(void *user, const char *name, uint64_t size) {
    gc_list *l = user;
    (void)size;
    if (l->count++) putchar(',');
    print_json_string(name);
    return 0;
}

static int cmd_gc(const char *dir, int dry) {
    gc_list l = {0};
    uint64_t files = 0, bytes = 0;
    printf("{\"removed\":[");
    int rc = shardpoint_gc(dir, dry ? SHARDPOINT_GC_DRY_RUN : 0, on_garbage, &l, &files, &bytes);
    printf("],\"code\":\"%s\",\"files\":%llu,\"bytes\":%llu,\"message\":", shardpoint_error_name(rc),
           (unsigned long long)files, (unsigned long long)bytes);
    print_json_string(rc ? shardpoint_last_error() : "");
    printf("}\n");
    return rc == 0 ? 0 : 1;
}

/* The checkpoint manager (a root of step-N checkpoints). */

static int print_deleted(void *user, uint64_t step, uint64_t bytes) {
    (void)bytes;
    int *first = user;
    printf("%s%llu", *first ? "" : ",", (unsigned long long)step);
    *first = 0;
    return 0;
}

/* retention ROOT KEEP_LAST, or delete ROOT STEP: {"code": ..., "deleted": [steps]}. */
static int cmd_manager(const char *what, const char *root, uint64_t n) {
    shardpoint_manager_options o = SHARDPOINT_MANAGER_OPTIONS_INIT;
    o.keep_last = n;
    shardpoint_manager *m = NULL;
    int rc = shardpoint_manager_open(&m, root, NULL, &o), first = 1;
    printf("{\"deleted\":[");
    if (rc == 0 && strcmp(what, "retention") == 0) rc = shardpoint_manager_apply_retention(m, 0, print_deleted, &first, NULL);
    else if (rc == 0 && (rc = shardpoint_manager_delete_step(m, n)) == 0) print_deleted(&first, n, 0);
    printf("],\"code\":\"%s\",\"message\":", shardpoint_error_name(rc));
    print_json_string(rc ? shardpoint_last_error() : "");
    printf("}\n");
    shardpoint_manager_free(m);
    return rc == 0 ? 0 : 1;
}

static int count_leftover(void *user, const char *name, uint64_t size) {
    (void)size;
    if (strncmp(name, ".deleting-", 10) == 0) ++*(int *)user;
    return 0;
}

/* steps ROOT: {"steps": [{"step", "state", "path"}], "leftovers": hidden directories of killed
 * deletions, "latest": the latest committed step or -1}. */
static int cmd_steps(const char *root) {
    shardpoint_manager *m = NULL;
    uint64_t n = 0, latest = 0;
    int leftovers = 0;
    int rc = shardpoint_manager_open(&m, root, NULL, NULL);
    if (rc == 0) rc = shardpoint_manager_list(m, &n);
    if (rc == 0) rc = shardpoint_manager_gc(m, SHARDPOINT_GC_DRY_RUN, count_leftover, &leftovers, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "steps: %s: %s\n", shardpoint_error_name(rc), shardpoint_last_error());
        shardpoint_manager_free(m);
        return 1;
    }
    printf("{\"steps\":[");
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_step_info s;
        shardpoint_manager_step_info(m, i, &s);
        printf("%s{\"step\":%llu,\"state\":\"%s\",\"path\":", i ? "," : "", (unsigned long long)s.step,
               s.state == SHARDPOINT_STEP_COMMITTED ? "committed" : s.state == SHARDPOINT_STEP_PARTIAL ? "partial" : "damaged");
        print_json_string(s.path);
        printf("}");
    }
    int have = shardpoint_manager_latest_step(m, &latest) == 0;
    printf("],\"leftovers\":%d,\"latest\":%lld}\n", leftovers, have ? (long long)latest : -1LL);
    shardpoint_manager_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && (strcmp(argv[1], "retention") == 0 || strcmp(argv[1], "delete") == 0))
        return cmd_manager(argv[1], argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "steps") == 0) return cmd_steps(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "save") == 0) return cmd_save(argv[2], strtoull(argv[3], NULL, 10), argc - 4, argv + 4);
    if (argc == 4 && strcmp(argv[1], "check") == 0) return cmd_check(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "state") == 0) return cmd_state(argv[2]);
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "gc") == 0) return cmd_gc(argv[2], argc == 4 && strcmp(argv[3], "dry") == 0);
    fprintf(stderr,
            "usage: fault_driver save DIR SEED [overwrite] [nofsync] [deflate|zstd] [ranks=N] [phases]\n"
            "       fault_driver check DIR SEED | state DIR | gc DIR [dry]\n"
            "       fault_driver retention ROOT KEEP_LAST | delete ROOT STEP | steps ROOT\n");
    return 2;
}
