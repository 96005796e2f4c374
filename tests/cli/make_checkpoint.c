/* make_checkpoint DIR N: saves N small f32 tensors ("t.00000", ...), each of shape [4, 64] in two
 * chunks of two rows, through the C ABI, as one process. Many entries make `inspect` print far
 * more than a pipe holds, which is what the SIGPIPE test needs. */
#include <stdio.h>
#include <stdlib.h>

#include "shardpoint.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    if (n <= 0) {
        fprintf(stderr, "N must be positive, got '%s'\n", argv[2]);
        return 2;
    }
    float *data = malloc((size_t)n * 4 * 64 * sizeof(float));
    if (!data) return 1;
    for (long i = 0; i < n * 4 * 64; ++i) data[i] = (float)(i % 1000);
    shardpoint_save *save = NULL;
    int rc = shardpoint_save_new(&save, argv[1], NULL, NULL);
    uint64_t shape[2] = {4, 64}, sizes[2] = {2, 64};
    for (long t = 0; rc == 0 && t < n; ++t) {
        char fqn[32];
        snprintf(fqn, sizeof fqn, "t.%05ld", t);
        for (uint64_t half = 0; rc == 0 && half < 2; ++half) {
            uint64_t offs[2] = {2 * half, 0};
            rc = shardpoint_save_add_tensor(save, fqn, SHARDPOINT_DTYPE_F32, 2, shape, offs, sizes,
                                            data + (t * 4 + 2 * half) * 64, NULL);
        }
    }
    if (rc == 0) rc = shardpoint_save_commit(save);
    if (rc != 0) fprintf(stderr, "make_checkpoint: %s: %s\n", shardpoint_error_name(rc), shardpoint_last_error());
    shardpoint_save_free(save);
    free(data);
    return rc == 0 ? 0 : 1;
}
