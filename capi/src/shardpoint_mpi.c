/* The MPI communicator: the public callback communicator driven by MPI_Gather / MPI_Bcast. */
#include "shardpoint_mpi.h"

#include <limits.h>
#include <stdlib.h>

typedef struct mpi_state {
    MPI_Comm comm;
} mpi_state;

/* MPI counts are int: move large payloads in pieces of at most 1 GiB. */
#define PIECE ((uint64_t)1 << 30)

static int mpi_gather(void *user, const void *send, uint64_t len, void *recv) {
    mpi_state *s = (mpi_state *)user;
    int rank, size;
    MPI_Comm_rank(s->comm, &rank);
    MPI_Comm_size(s->comm, &size);
    if (len <= PIECE)
        return MPI_Gather(send, (int)len, MPI_BYTE, recv, (int)len, MPI_BYTE, 0, s->comm) == MPI_SUCCESS ? 0 : -1;
    /* Rare: gather piecewise through a scratch buffer on the root. */
    char *scratch = NULL;
    if (rank == 0 && !(scratch = (char *)malloc((size_t)(PIECE * (uint64_t)size)))) return -1;
    for (uint64_t at = 0; at < len; at += PIECE) {
        uint64_t n = len - at < PIECE ? len - at : PIECE;
        if (MPI_Gather((const char *)send + at, (int)n, MPI_BYTE, scratch, (int)n, MPI_BYTE, 0, s->comm) != MPI_SUCCESS) {
            free(scratch);
            return -1;
        }
        if (rank == 0)
            for (int r = 0; r < size; ++r)
                for (uint64_t k = 0; k < n; ++k) ((char *)recv)[(uint64_t)r * len + at + k] = scratch[(uint64_t)r * n + k];
    }
    free(scratch);
    return 0;
}

static int mpi_broadcast(void *user, void *buf, uint64_t len) {
    mpi_state *s = (mpi_state *)user;
    for (uint64_t at = 0; at < len || (len == 0 && at == 0); at += PIECE) {
        uint64_t n = len - at < PIECE ? len - at : PIECE;
        if (MPI_Bcast((char *)buf + at, (int)n, MPI_BYTE, 0, s->comm) != MPI_SUCCESS) return -1;
        if (len == 0) break;
    }
    return 0;
}

static void mpi_destroy(void *user) {
    mpi_state *s = (mpi_state *)user;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&s->comm);
    free(s);
}

int shardpoint_comm_new_mpi(shardpoint_comm **out, MPI_Comm comm) {
    if (!out) return SHARDPOINT_EINVAL;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) return SHARDPOINT_EINVAL;
    mpi_state *s = (mpi_state *)malloc(sizeof *s);
    if (!s) return SHARDPOINT_ENOMEM;
    if (MPI_Comm_dup(comm, &s->comm) != MPI_SUCCESS) {
        free(s);
        return SHARDPOINT_ECOMM;
    }
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    MPI_Comm_rank(s->comm, &cb.rank);
    MPI_Comm_size(s->comm, &cb.size);
    cb.user = s;
    cb.gather = mpi_gather;
    cb.broadcast = mpi_broadcast;
    cb.destroy = mpi_destroy;
    int rc = shardpoint_comm_new_callbacks(out, &cb);
    if (rc != SHARDPOINT_OK) mpi_destroy(s);
    return rc;
}
