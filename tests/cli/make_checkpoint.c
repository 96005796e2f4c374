/* make_checkpoint DIR N [SEED [ROWS [DTYPE [COLS]]]]: saves N small tensors ("t.00000", ...), each
 * of shape [4, COLS] (default 64) and dtype f32 or f64 (default f32) in chunks of ROWS rows (1, 2
 * or 4; default 2), through the C ABI, as one process. Many entries make `inspect` print far more
 * than a pipe holds, which is what the SIGPIPE test needs. A SEED other than 0 adds SEED to
 * elements [0,5] and [2,2] of t.00000 (for diff). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardpoint.h"

int main(int argc, char **argv) {
    if (argc < 3 || argc > 7) {
        fprintf(stderr, "usage: %s DIR N [SEED [ROWS [DTYPE [COLS]]]]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    if (n <= 0) {
        fprintf(stderr, "N must be positive, got '%s'\n", argv[2]);
        return 2;
    }
    long seed = argc > 3 ? atol(argv[3]) : 0;
    uint64_t rows = argc > 4 ? (uint64_t)atol(argv[4]) : 2;
    int f64 = argc > 5 && strcmp(argv[5], "f64") == 0;
    uint64_t cols = argc > 6 ? (uint64_t)atol(argv[6]) : 64;
    if ((rows != 1 && rows != 2 && rows != 4) || (argc > 5 && !f64 && strcmp(argv[5], "f32") != 0) || cols < 8) {
        fprintf(stderr, "ROWS must be 1, 2 or 4, DTYPE f32 or f64, COLS at least 8\n");
        return 2;
    }
    size_t count = (size_t)n * 4 * cols, esize = f64 ? 8 : 4;
    unsigned char *data = malloc(count * esize);
    if (!data) return 1;
    for (size_t i = 0; i < count; ++i) {
        double v = (double)(i % 1000) + (i == 5 || i == 2 * cols + 2 ? (double)seed : 0);
        if (f64) ((double *)data)[i] = v;
        else ((float *)data)[i] = (float)v;
    }
    shardpoint_save *save = NULL;
    int rc = shardpoint_save_new(&save, argv[1], NULL, NULL);
    uint64_t shape[2] = {4, cols}, sizes[2] = {rows, cols};
    for (long t = 0; rc == 0 && t < n; ++t) {
        char fqn[32];
        snprintf(fqn, sizeof fqn, "t.%05ld", t);
        for (uint64_t part = 0; rc == 0 && part < 4 / rows; ++part) {
            uint64_t offs[2] = {rows * part, 0};
            rc = shardpoint_save_add_tensor(save, fqn, f64 ? SHARDPOINT_DTYPE_F64 : SHARDPOINT_DTYPE_F32, 2, shape, offs,
                                            sizes, data + ((size_t)t * 4 + rows * part) * cols * esize, NULL);
        }
    }
    if (rc == 0) rc = shardpoint_save_commit(save);
    if (rc != 0) fprintf(stderr, "make_checkpoint: %s: %s\n", shardpoint_error_name(rc), shardpoint_last_error());
    shardpoint_save_free(save);
    free(data);
    return rc == 0 ? 0 : 1;
}
