/*
 * shardpoint_mpi.h - an MPI communicator for shardpoint, in its own library (libshardpoint_mpi)
 * so that libshardpoint itself never depends on MPI.
 *
 * Link with: pkg-config --cflags --libs shardpoint-mpi
 */
#ifndef SHARDPOINT_MPI_H
#define SHARDPOINT_MPI_H

#include <mpi.h>

#include "shardpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A communicator over the MPI communicator `comm` (duplicated, so shardpoint's messages never mix
 * with the caller's; the duplicate is freed by shardpoint_comm_free, which must then be called
 * before MPI_Finalize). MPI must be initialized. Collective over `comm` (MPI_Comm_dup).
 * Errors: SHARDPOINT_EINVAL (NULL `out`, or MPI not initialized), SHARDPOINT_ECOMM (MPI_Comm_dup
 * failed), SHARDPOINT_ENOMEM. These three are returned without a message (this library cannot set
 * libshardpoint's thread-local error); other codes come from shardpoint_comm_new_callbacks, with one.
 * A rank that dies outright aborts the whole MPI job: that is MPI's failure model. */
SHARDPOINT_API int shardpoint_comm_new_mpi(shardpoint_comm **out, MPI_Comm comm);

#ifdef __cplusplus
}
#endif

#endif /* SHARDPOINT_MPI_H */
