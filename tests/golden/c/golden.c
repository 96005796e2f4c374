/* The C golden program (tests/golden/README.md):
 *
 *     golden_c write DIR WORLD   saves the model into DIR with WORLD ranks (threads + callbacks)
 *     golden_c read DIR          checks DIR; exit status 0 only if everything matches
 *
 * The model file is $SHARDPOINT_GOLDEN_MODEL, else the model.txt this program was built with.
 * Only the public C ABI is used. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardpoint.h"
#include "thread_group.h"

#ifndef SP_GOLDEN_MODEL
#define SP_GOLDEN_MODEL "tests/golden/model.txt"
#endif

/* --- the model ------------------------------------------------------------------------------ */

enum kind { TENSOR, BYTES, META };
enum sharding { ROWS, COLS, REPLICATED, RANK0 };

typedef struct record {
    enum kind kind;
    char fqn[256]; /* meta: the key */
    int32_t dtype;
    uint32_t ndim;
    uint64_t shape[SHARDPOINT_MAX_NDIM];
    uint64_t length; /* bytes */
    enum sharding sharding;
    uint32_t seed;
    char value[512]; /* meta */
} record;

typedef struct model {
    record *records;
    size_t count;
} model;

static int parse_sharding(const char *s, enum sharding *out) {
    static const char *names[] = {"rows", "cols", "replicated", "rank0"};
    for (int i = 0; i < 4; ++i)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum sharding)i;
            return 0;
        }
    return -1;
}

static int parse_shape(const char *s, record *r) {
    r->ndim = 0;
    if (strcmp(s, "-") == 0) return 0;
    while (*s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || r->ndim == SHARDPOINT_MAX_NDIM) return -1;
        r->shape[r->ndim++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return 0;
}

static int load_model(model *m) {
    const char *path = getenv("SHARDPOINT_GOLDEN_MODEL");
    if (!path || !*path) path = SP_GOLDEN_MODEL;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "golden: cannot open the model %s (set SHARDPOINT_GOLDEN_MODEL)\n", path);
        return -1;
    }
    m->records = NULL;
    m->count = 0;
    char line[2048];
    int number = 0;
    while (fgets(line, sizeof line, f)) {
        ++number;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *fields[16];
        int n = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok && n < 16; tok = strtok(NULL, " \t\r\n")) fields[n++] = tok;
        if (n == 0) continue;
        record r;
        memset(&r, 0, sizeof r);
        int ok = 0;
        if (strcmp(fields[0], "tensor") == 0 && n == 6) {
            r.kind = TENSOR;
            ok = strlen(fields[1]) < sizeof r.fqn && shardpoint_dtype_from_name(fields[2], &r.dtype) == 0 &&
                 parse_shape(fields[3], &r) == 0 && parse_sharding(fields[4], &r.sharding) == 0;
            r.seed = (uint32_t)strtoul(fields[5], NULL, 10);
        } else if (strcmp(fields[0], "bytes") == 0 && n == 5) {
            r.kind = BYTES;
            r.length = strtoull(fields[2], NULL, 10);
            ok = strlen(fields[1]) < sizeof r.fqn && parse_sharding(fields[3], &r.sharding) == 0 &&
                 (r.sharding == RANK0 || r.sharding == REPLICATED);
            r.seed = (uint32_t)strtoul(fields[4], NULL, 10);
        } else if (strcmp(fields[0], "meta") == 0 && n >= 3) {
            r.kind = META;
            ok = strlen(fields[1]) < sizeof r.fqn;
            for (int i = 2; i < n && ok; ++i) { /* the value: the remaining fields joined by spaces */
                if (i > 2) strcat(r.value, " ");
                ok = strlen(r.value) + strlen(fields[i]) + 1 < sizeof r.value;
                if (ok) strcat(r.value, fields[i]);
            }
        }
        if (!ok) {
            fprintf(stderr, "golden: %s line %d is malformed\n", path, number);
            fclose(f);
            return -1;
        }
        strcpy(r.fqn, fields[1]);
        if (r.kind == TENSOR && ((r.sharding == ROWS && r.ndim < 1) || (r.sharding == COLS && r.ndim < 2))) {
            fprintf(stderr, "golden: %s cannot be sharded that way\n", r.fqn);
            fclose(f);
            return -1;
        }
        m->records = realloc(m->records, (m->count + 1) * sizeof *m->records);
        m->records[m->count++] = r;
    }
    fclose(f);
    return 0;
}

/* --- the generator --------------------------------------------------------------------------- */

static uint64_t numel(const record *r) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < r->ndim; ++d) n *= r->shape[d];
    return n;
}

static uint64_t nbytes(const record *r) {
    return r->kind == BYTES ? r->length : numel(r) * shardpoint_dtype_size(r->dtype);
}

/* The whole entry's byte image: byte(k) = (k*131 + seed*17 + (k>>11)) mod 256 (mod 2 for bool). */
static unsigned char *generate(const record *r) {
    uint64_t n = nbytes(r);
    unsigned char *p = malloc(n ? n : 1);
    if (!p) return NULL;
    const int is_bool = r->kind == TENSOR && r->dtype == SHARDPOINT_DTYPE_BOOL;
    for (uint64_t k = 0; k < n; ++k) {
        unsigned char b = (unsigned char)((k * 131u + (uint64_t)r->seed * 17u + (k >> 11)) & 0xffu);
        p[k] = is_bool ? (unsigned char)(b & 1u) : b;
    }
    return p;
}

static uint64_t part_lo(uint64_t n, int r, int w) { return n * (uint64_t)r / (uint64_t)w; }

/* --- write ------------------------------------------------------------------------------------ */

typedef struct rank_job {
    const model *m;
    const char *dir;
    int rank, world;
    shardpoint_comm *comm; /* this rank's communicator in the thread group */
    int rc;
    char message[1024];
} rank_job;

static int offer(shardpoint_save *s, const record *r, int rank, int world, unsigned char **keep) {
    *keep = NULL;
    if (r->kind == META) return shardpoint_save_set_metadata(s, r->fqn, r->value);
    if (r->sharding == RANK0 && rank != 0) return 0;
    unsigned char *data = generate(r);
    if (!data) return SHARDPOINT_ENOMEM;
    *keep = data;
    if (r->kind == BYTES) return shardpoint_save_add_bytes(s, r->fqn, r->length ? data : NULL, r->length);
    uint64_t offsets[SHARDPOINT_MAX_NDIM] = {0}, sizes[SHARDPOINT_MAX_NDIM];
    int64_t strides[SHARDPOINT_MAX_NDIM];
    int64_t acc = 1;
    for (uint32_t d = r->ndim; d-- > 0;) {
        sizes[d] = r->shape[d];
        strides[d] = acc;
        acc *= (int64_t)r->shape[d];
    }
    const unsigned char *first = data;
    if (r->sharding == ROWS || r->sharding == COLS) {
        const uint32_t dim = r->sharding == ROWS ? 0 : 1;
        offsets[dim] = part_lo(r->shape[dim], rank, world);
        sizes[dim] = part_lo(r->shape[dim], rank + 1, world) - offsets[dim];
        if (sizes[dim] == 0) return 0; /* an empty part offers nothing */
        /* the part is a view into the whole tensor: a column part is saved from strided memory */
        first += (uint64_t)strides[dim] * offsets[dim] * shardpoint_dtype_size(r->dtype);
    }
    return shardpoint_save_add_tensor(s, r->fqn, r->dtype, r->ndim, r->shape, offsets, sizes,
                                      numel(r) ? first : NULL, r->ndim ? strides : NULL);
}

static void *write_rank(void *arg) {
    rank_job *job = arg;
    shardpoint_save *save = NULL;
    shardpoint_save_options options = SHARDPOINT_SAVE_OPTIONS_INIT;
    options.flags = SHARDPOINT_SAVE_OVERWRITE;
    /* Only used to make the committed compressed golden checkpoint (tests/golden/README.md). */
    const char *level = getenv("SHARDPOINT_GOLDEN_COMPRESSION");
    if (level) options.compression_level = atoi(level);
    const char *codec = getenv("SHARDPOINT_GOLDEN_CODEC"); /* zstd or zlib: block compression (format 2) */
    if (codec) options.codec = strcmp(codec, "zstd") == 0 ? SHARDPOINT_CODEC_ZSTD : SHARDPOINT_CODEC_ZLIB;
    if (getenv("SHARDPOINT_GOLDEN_SHUFFLE")) options.filters = SHARDPOINT_FILTER_SHUFFLE;
    unsigned char **keep = calloc(job->m->count + 1, sizeof *keep);
    int rc = shardpoint_save_new(&save, job->dir, job->comm, &options);
    if (rc != 0) {
        /* Cannot happen with valid arguments; the other ranks would wait forever, so stop here. */
        fprintf(stderr, "golden: rank %d: save_new: %s\n", job->rank, shardpoint_last_error());
        exit(1);
    }
    for (size_t i = 0; i < job->m->count && rc == 0; ++i) {
        rc = offer(save, &job->m->records[i], job->rank, job->world, &keep[i]);
        if (rc) snprintf(job->message, sizeof job->message, "offer %s: %s", job->m->records[i].fqn, shardpoint_last_error());
    }
    int commit_rc = shardpoint_save_commit(save); /* collective: also after a failed offer */
    if (rc == 0 && commit_rc != 0) {
        rc = commit_rc;
        snprintf(job->message, sizeof job->message, "commit: %s", shardpoint_last_error());
    }
    job->rc = rc;
    shardpoint_save_free(save);
    for (size_t i = 0; i < job->m->count; ++i) free(keep[i]);
    free(keep);
    return NULL;
}

static int write_checkpoint(const model *m, const char *dir, int world) {
    sp_group *g = group_new(world);
    rank_job *jobs = calloc((size_t)world, sizeof *jobs);
    pthread_t *threads = calloc((size_t)world, sizeof *threads);
    for (int r = 0; r < world; ++r) {
        jobs[r] = (rank_job){m, dir, r, world, NULL, 0, ""};
        if (!g || group_comm(g, r, &jobs[r].comm) != 0) {
            fprintf(stderr, "golden: cannot make the communicator of rank %d\n", r);
            exit(1);
        }
    }
    for (int r = 0; r < world; ++r) {
        if (pthread_create(&threads[r], NULL, write_rank, &jobs[r]) != 0) {
            fprintf(stderr, "golden: cannot start rank %d\n", r);
            exit(1);
        }
    }
    int failed = 0;
    for (int r = 0; r < world; ++r) {
        pthread_join(threads[r], NULL);
        if (jobs[r].rc != 0) {
            fprintf(stderr, "golden write %s: rank %d: %s: %s\n", dir, r, shardpoint_error_name(jobs[r].rc),
                    jobs[r].message);
            failed = 1;
        }
    }
    for (int r = 0; r < world; ++r) shardpoint_comm_free(jobs[r].comm);
    group_free(g);
    free(threads), free(jobs);
    if (!failed) printf("golden write %s: %d ranks ok\n", dir, world);
    return failed;
}

/* --- read ------------------------------------------------------------------------------------- */

static int failures;

static void miss(const char *fqn, const char *what) {
    ++failures;
    printf("MISS %s: %s\n", fqn, what);
}

static void check_tensor(shardpoint_reader *reader, const record *r, const shardpoint_entry_info *e) {
    if (e->kind != SHARDPOINT_ENTRY_TENSOR || e->dtype != r->dtype || e->ndim != r->ndim ||
        (r->ndim && memcmp(e->shape, r->shape, r->ndim * sizeof(uint64_t)) != 0)) {
        char what[256];
        snprintf(what, sizeof what, "stored as kind %d dtype %s ndim %u, want tensor %s ndim %u", e->kind,
                 e->dtype >= 0 ? shardpoint_dtype_name(e->dtype) : "-", e->ndim, shardpoint_dtype_name(r->dtype), r->ndim);
        miss(r->fqn, what);
        return;
    }
    const uint64_t n = nbytes(r);
    unsigned char *expected = generate(r), *got = malloc(n ? n : 1);
    uint64_t zeros[SHARDPOINT_MAX_NDIM] = {0};
    memset(got, 0xa5, n ? n : 1);
    if (shardpoint_reader_read_tensor(reader, r->fqn, r->dtype, r->ndim, zeros, r->shape, n ? got : NULL, NULL) != 0)
        miss(r->fqn, shardpoint_last_error());
    else if (memcmp(got, expected, n) != 0)
        miss(r->fqn, "the whole tensor differs from the generator");
    if (r->ndim >= 1 && r->shape[0] >= 2) {
        /* rows floor(n0 / 3) .. n0, other dims whole, into a C-order buffer */
        uint64_t offsets[SHARDPOINT_MAX_NDIM] = {0}, sizes[SHARDPOINT_MAX_NDIM];
        memcpy(sizes, r->shape, r->ndim * sizeof(uint64_t));
        offsets[0] = r->shape[0] / 3;
        sizes[0] = r->shape[0] - offsets[0];
        const uint64_t row_bytes = n / r->shape[0];
        const uint64_t box_bytes = sizes[0] * row_bytes;
        memset(got, 0xa5, n ? n : 1);
        if (shardpoint_reader_read_tensor(reader, r->fqn, r->dtype, r->ndim, offsets, sizes, box_bytes ? got : NULL,
                                          NULL) != 0)
            miss(r->fqn, shardpoint_last_error());
        else if (memcmp(got, expected + offsets[0] * row_bytes, box_bytes) != 0)
            miss(r->fqn, "the box from row shape[0]/3 differs from the generator");
    }
    free(expected), free(got);
}

static void check_bytes(shardpoint_reader *reader, const record *r, const shardpoint_entry_info *e) {
    if (e->kind != SHARDPOINT_ENTRY_BYTES || e->nbytes != r->length) {
        char what[128];
        snprintf(what, sizeof what, "stored as kind %d of %llu bytes, want bytes of %llu", e->kind,
                 (unsigned long long)e->nbytes, (unsigned long long)r->length);
        miss(r->fqn, what);
        return;
    }
    unsigned char *expected = generate(r), *got = malloc(r->length + 1);
    uint64_t len = 0;
    if (shardpoint_reader_read_bytes(reader, r->fqn, r->length ? got : NULL, r->length, &len) != 0)
        miss(r->fqn, shardpoint_last_error());
    else if (len != r->length || memcmp(got, expected, r->length) != 0)
        miss(r->fqn, "the blob differs from the generator");
    free(expected), free(got);
}

static int read_checkpoint(const model *m, const char *dir) {
    shardpoint_reader *reader = NULL;
    if (shardpoint_reader_open(&reader, dir, NULL) != 0) {
        printf("golden read %s: %s: %s\n", dir, shardpoint_error_name(shardpoint_last_error_code()), shardpoint_last_error());
        return 1;
    }
    size_t wanted = 0;
    for (size_t i = 0; i < m->count; ++i) {
        const record *r = &m->records[i];
        if (r->kind == META) {
            const char *value = NULL;
            if (shardpoint_reader_metadata_get(reader, r->fqn, &value) != 0) miss(r->fqn, "user metadata key missing");
            else if (strcmp(value, r->value) != 0) miss(r->fqn, "user metadata value differs");
            continue;
        }
        ++wanted;
        uint64_t index;
        shardpoint_entry_info e;
        if (shardpoint_reader_find(reader, r->fqn, &index) != 0 || shardpoint_reader_entry_info(reader, index, &e) != 0) {
            miss(r->fqn, "missing");
            continue;
        }
        if (r->kind == TENSOR) check_tensor(reader, r, &e);
        else check_bytes(reader, r, &e);
    }
    /* exactly the model's entries: nothing extra */
    uint64_t count = 0;
    shardpoint_reader_entry_count(reader, &count);
    for (uint64_t i = 0; i < count; ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(reader, i, &e);
        int known = 0;
        for (size_t k = 0; k < m->count && !known; ++k)
            known = m->records[k].kind != META && strcmp(m->records[k].fqn, e.fqn) == 0;
        if (!known) miss(e.fqn, "unexpected entry");
    }
    shardpoint_reader_free(reader);
    if (failures) {
        printf("golden read %s: %d misses\n", dir, failures);
        return 1;
    }
    printf("golden read %s: %zu entries ok\n", dir, wanted);
    return 0;
}

int main(int argc, char **argv) {
    model m;
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        int world = atoi(argv[3]);
        if (world < 1 || world > 1024) {
            fprintf(stderr, "golden: WORLD must be 1..1024\n");
            return 2;
        }
        if (load_model(&m) != 0) return 2;
        int rc = write_checkpoint(&m, argv[2], world);
        free(m.records);
        return rc;
    }
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        if (load_model(&m) != 0) return 2;
        int rc = read_checkpoint(&m, argv[2]);
        free(m.records);
        return rc;
    }
    fprintf(stderr, "usage: golden_c write DIR WORLD | golden_c read DIR\n");
    return 2;
}
