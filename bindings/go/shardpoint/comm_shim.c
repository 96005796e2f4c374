// C side of the callback communicator: the library wants function pointers with exact C
// signatures (const-qualified), and `user` must travel as a pointer, so these shims convert
// between the library's types and the exported Go functions (which take the cgo.Handle as an
// integer, never as a Go pointer).
#include <stdint.h>
#include "shardpoint.h"
#include "_cgo_export.h"

static int sp_go_gather(void *user, const void *send, uint64_t len, void *recv) {
    return shardpointGoGather((uintptr_t)user, (void *)send, len, recv);
}

static int sp_go_broadcast(void *user, void *buf, uint64_t len) {
    return shardpointGoBroadcast((uintptr_t)user, buf, len);
}

static void sp_go_destroy(void *user) {
    shardpointGoDestroy((uintptr_t)user);
}

int sp_go_comm_new(shardpoint_comm **out, int32_t rank, int32_t size, uintptr_t handle) {
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    cb.rank = rank;
    cb.size = size;
    cb.user = (void *)handle;
    cb.gather = sp_go_gather;
    cb.broadcast = sp_go_broadcast;
    cb.destroy = sp_go_destroy;
    return shardpoint_comm_new_callbacks(out, &cb);
}

/* Progress: the library's callback travels with the cgo.Handle of a progressState as `user`. */
static int sp_go_progress(void *user, int32_t phase, uint64_t done, uint64_t total) {
    return shardpointGoProgress((uintptr_t)user, phase, done, total);
}

int sp_go_save_set_progress(shardpoint_save *save, uintptr_t handle) {
    return shardpoint_save_set_progress(save, handle ? sp_go_progress : NULL, (void *)handle);
}

int sp_go_load_set_progress(shardpoint_load *load, uintptr_t handle) {
    return shardpoint_load_set_progress(load, handle ? sp_go_progress : NULL, (void *)handle);
}

int sp_go_reader_set_progress(shardpoint_reader *reader, uintptr_t handle) {
    return shardpoint_reader_set_progress(reader, handle ? sp_go_progress : NULL, (void *)handle);
}

void sp_go_convert_set_progress(shardpoint_convert_options *options, uintptr_t handle) {
    options->progress = handle ? sp_go_progress : NULL;
    options->progress_user = (void *)handle;
}
