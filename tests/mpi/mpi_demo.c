/*
 * mpi_demo - save a row-sharded model with N MPI ranks, load it back with any other number.
 *
 *   mpirun -np 4 mpi_demo save DIR [MIB_PER_RANK]   (default 64 MiB per rank)
 *   mpirun -np 3 mpi_demo load DIR
 *
 * The model: 8 f32 matrices of 1024 columns ("layers.L.weight"), split by rows over the ranks,
 * a replicated embedding (written once), a replicated step counter and an optimizer blob that
 * rank 0 alone holds. Every element is a function of its position, so the loader checks every
 * value it reads. Both commands print what each rank did and the throughput.
 */
#include <inttypes.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardpoint.h"
#include "shardpoint_mpi.h"

#define LAYERS 8
#define COLS 1024

static int rank_, world_;

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        int rc_ = (call);                                                                           \
        if (rc_ != SHARDPOINT_OK) {                                                                 \
            fprintf(stderr, "[rank %d] %s failed: %s: %s\n", rank_, #call, shardpoint_error_name(rc_), \
                    shardpoint_last_error());                                                       \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                           \
        }                                                                                           \
    } while (0)

static void part(uint64_t n, int r, int w, uint64_t *lo, uint64_t *len) {
    *lo = (uint64_t)r * n / (uint64_t)w;
    *len = (uint64_t)(r + 1) * n / (uint64_t)w - *lo;
}

/* The value of element (i, j) of layer l: exact in f32 (below 2^24). */
static float value(int l, uint64_t i, uint64_t j) { return (float)((l * 1000003ull + i * COLS + j) % 16777213ull); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "[rank %d] out of memory\n", rank_);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

static double max_over_ranks(double x) {
    double m;
    MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

static int do_save(const char *dir, uint64_t mib_per_rank) {
    /* Rows per layer so the layers add up to mib_per_rank MiB per rank. */
    const uint64_t rows = mib_per_rank * (1u << 20) * (uint64_t)world_ / (LAYERS * COLS * sizeof(float));
    shardpoint_comm *comm;
    CHECK(shardpoint_comm_new_mpi(&comm, MPI_COMM_WORLD));
    shardpoint_save_options opts = SHARDPOINT_SAVE_OPTIONS_INIT;
    opts.flags = SHARDPOINT_SAVE_OVERWRITE;
    opts.io_threads = 1; /* the ranks already share the cores */
    shardpoint_save *save;
    CHECK(shardpoint_save_new(&save, dir, comm, &opts));

    uint64_t lo, n;
    part(rows, rank_, world_, &lo, &n);
    float *shards[LAYERS];
    for (int l = 0; l < LAYERS; ++l) {
        shards[l] = xmalloc(n * COLS * sizeof(float));
        for (uint64_t i = 0; i < n; ++i)
            for (uint64_t j = 0; j < COLS; ++j) shards[l][i * COLS + j] = value(l, lo + i, j);
        char fqn[64];
        snprintf(fqn, sizeof fqn, "layers.%d.weight", l);
        uint64_t shape[2] = {rows, COLS}, off[2] = {lo, 0}, size[2] = {n, COLS};
        CHECK(shardpoint_save_add_tensor(save, fqn, SHARDPOINT_DTYPE_F32, 2, shape, off, size, shards[l], NULL));
    }
    static float embed[1000 * 64];
    for (int k = 0; k < 1000 * 64; ++k) embed[k] = (float)k;
    uint64_t eshape[2] = {1000, 64}, ezero[2] = {0, 0};
    CHECK(shardpoint_save_add_tensor(save, "embed.weight", SHARDPOINT_DTYPE_F32, 2, eshape, ezero, eshape, embed, NULL));
    int64_t step = 1000;
    CHECK(shardpoint_save_add_tensor(save, "step", SHARDPOINT_DTYPE_I64, 0, NULL, NULL, NULL, &step, NULL));
    char optimizer[4096];
    memset(optimizer, 'o', sizeof optimizer);
    if (rank_ == 0) CHECK(shardpoint_save_add_bytes(save, "optimizer", optimizer, sizeof optimizer));
    CHECK(shardpoint_save_set_metadata(save, "demo", "mpi_demo"));

    printf("rank %d/%d: offers rows [%" PRIu64 ", %" PRIu64 ") of %d layers of %" PRIu64 " x %d f32 (%.1f MiB), the replicated "
           "embedding and step%s\n",
           rank_, world_, lo, lo + n, LAYERS, rows, COLS, (double)(n * COLS * sizeof(float) * LAYERS) / (1 << 20),
           rank_ == 0 ? ", the optimizer blob" : "");
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    CHECK(shardpoint_save_commit(save));
    double elapsed = max_over_ranks(MPI_Wtime() - t0);

    if (rank_ == 0) {
        shardpoint_reader *reader;
        CHECK(shardpoint_reader_open(&reader, dir, NULL));
        shardpoint_storage_info info;
        CHECK(shardpoint_reader_storage_info(reader, &info));
        double gb = (double)info.total_stored_bytes / 1e9;
        printf("saved %s: %.3f GB in %" PRIu64 " data files by %d ranks in %.3f s = %.2f GB/s (save id %s)\n", dir, gb,
               info.file_count, world_, elapsed, gb / elapsed, info.save_id);
        shardpoint_reader_free(reader);
    }
    shardpoint_save_free(save);
    for (int l = 0; l < LAYERS; ++l) free(shards[l]);
    shardpoint_comm_free(comm);
    return 0;
}

static int do_load(const char *dir) {
    shardpoint_comm *comm;
    CHECK(shardpoint_comm_new_mpi(&comm, MPI_COMM_WORLD));
    shardpoint_reader *reader;
    CHECK(shardpoint_reader_open(&reader, dir, NULL));
    shardpoint_storage_info info;
    CHECK(shardpoint_reader_storage_info(reader, &info));
    uint64_t index;
    CHECK(shardpoint_reader_find(reader, "layers.0.weight", &index));
    shardpoint_entry_info e;
    CHECK(shardpoint_reader_entry_info(reader, index, &e));
    const uint64_t rows = e.shape[0];

    shardpoint_load *load;
    CHECK(shardpoint_load_new(&load, reader, comm));
    uint64_t lo, n;
    part(rows, rank_, world_, &lo, &n);
    float *shards[LAYERS];
    for (int l = 0; l < LAYERS; ++l) {
        shards[l] = xmalloc(n * COLS * sizeof(float));
        char fqn[64];
        snprintf(fqn, sizeof fqn, "layers.%d.weight", l);
        uint64_t off[2] = {lo, 0}, size[2] = {n, COLS};
        CHECK(shardpoint_load_add_tensor(load, fqn, SHARDPOINT_DTYPE_F32, 2, off, size, shards[l], NULL));
    }
    int64_t step = 0;
    CHECK(shardpoint_load_add_tensor(load, "step", SHARDPOINT_DTYPE_I64, 0, NULL, NULL, &step, NULL));

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    CHECK(shardpoint_load_execute(load));
    double elapsed = max_over_ranks(MPI_Wtime() - t0);

    uint64_t bad = 0;
    for (int l = 0; l < LAYERS; ++l)
        for (uint64_t i = 0; i < n; ++i)
            for (uint64_t j = 0; j < COLS; ++j) bad += shards[l][i * COLS + j] != value(l, lo + i, j);
    bad += step != 1000;
    printf("rank %d/%d: loaded rows [%" PRIu64 ", %" PRIu64 ") of %d layers (%.1f MiB): %s\n", rank_, world_, lo, lo + n, LAYERS,
           (double)(n * COLS * sizeof(float) * LAYERS) / (1 << 20), bad ? "WRONG VALUES" : "every value checked");
    fflush(stdout);
    uint64_t total_bad;
    MPI_Allreduce(&bad, &total_bad, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ == 0) {
        double gb = (double)(rows * COLS * sizeof(float) * LAYERS) / 1e9;
        printf("loaded %s (saved by %d ranks) with %d ranks: %.3f GB in %.3f s = %.2f GB/s, %s\n", dir, info.world_size, world_, gb,
               elapsed, gb / elapsed, total_bad ? "MISMATCHES FOUND" : "all values match");
    }
    shardpoint_load_free(load);
    shardpoint_reader_free(reader);
    for (int l = 0; l < LAYERS; ++l) free(shards[l]);
    shardpoint_comm_free(comm);
    return total_bad ? 1 : 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    int rc = 2;
    if (argc >= 3 && strcmp(argv[1], "save") == 0) {
        long mib = argc >= 4 ? atol(argv[3]) : 64;
        rc = do_save(argv[2], mib > 0 ? (uint64_t)mib : 64);
    } else if (argc >= 3 && strcmp(argv[1], "load") == 0) {
        rc = do_load(argv[2]);
    } else if (rank_ == 0) {
        fprintf(stderr, "usage: mpirun -np N %s save DIR [MIB_PER_RANK]\n       mpirun -np M %s load DIR\n", argv[0], argv[0]);
    }
    MPI_Finalize();
    return rc;
}
