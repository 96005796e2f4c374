/* A program that knows shardpoint only through its installed header and library: built either
 * with `pkg-config --cflags --libs shardpoint` or with find_package(shardpoint). It saves a small
 * checkpoint into argv[1], loads it back and checks every value. */
#include <shardpoint.h>

#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                             \
    do {                                                                                        \
        int rc_ = (call);                                                                       \
        if (rc_ != SHARDPOINT_OK) {                                                             \
            fprintf(stderr, "%s: %s: %s\n", #call, shardpoint_error_name(rc_), shardpoint_last_error()); \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: consumer DIR\n");
        return 2;
    }
    if (shardpoint_version_number() != SHARDPOINT_VERSION_NUMBER) {
        fprintf(stderr, "header %s but library %s\n", SHARDPOINT_VERSION_STRING, shardpoint_version_string());
        return 1;
    }
    const uint64_t shape[2] = {2, 3}, zeros[2] = {0, 0};
    const double w[6] = {1.5, -2, 3.25, 0, 1e300, -1e-300};
    shardpoint_save_options options = SHARDPOINT_SAVE_OPTIONS_INIT;
    options.flags = SHARDPOINT_SAVE_OVERWRITE;
    shardpoint_save *save = NULL;
    CHECK(shardpoint_save_new(&save, argv[1], NULL, &options));
    CHECK(shardpoint_save_add_tensor(save, "w", SHARDPOINT_DTYPE_F64, 2, shape, zeros, shape, w, NULL));
    CHECK(shardpoint_save_set_metadata(save, "consumer", "yes"));
    CHECK(shardpoint_save_commit(save));
    shardpoint_save_free(save);

    shardpoint_reader *reader = NULL;
    double got[6] = {0};
    const char *value = NULL;
    CHECK(shardpoint_reader_open(&reader, argv[1], NULL));
    CHECK(shardpoint_reader_read_tensor(reader, "w", SHARDPOINT_DTYPE_F64, 2, zeros, shape, got, NULL));
    CHECK(shardpoint_reader_metadata_get(reader, "consumer", &value));
    CHECK(shardpoint_reader_verify(reader));
    int ok = memcmp(got, w, sizeof w) == 0 && strcmp(value, "yes") == 0;
    shardpoint_reader_free(reader);
    printf("consumer of shardpoint %s: %s\n", shardpoint_version_string(), ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
