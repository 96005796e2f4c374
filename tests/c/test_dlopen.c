/* Loads libshardpoint.so.0 at run time (this program does not link it), resolves every function
 * the header declares, and saves and loads a checkpoint through the resolved pointers only. The
 * list of functions is read from shardpoint.h itself, so a function added to the header but not
 * exported fails here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardpoint.h"

static int failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                              \
        }                                                                            \
    } while (0)

static void *lib;

/* A typed pointer to the library's function of the same name. */
#define RESOLVE(name) __typeof__(&name) p_##name = (__typeof__(&name))resolve(#name)

static void *resolve(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

/* Every "SHARDPOINT_API ... shardpoint_xxx(" declaration of the header. */
static int resolve_all_declared(const char *header) {
    FILE *f = fopen(header, "r");
    if (!f) {
        perror(header);
        return -1;
    }
    char line[1024];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "SHARDPOINT_API ", 15) != 0) continue;
        char *paren = strchr(line, '(');
        if (!paren) continue;
        char *end = paren;
        while (end > line && end[-1] == ' ') --end;
        char *start = end;
        while (start > line && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') ||
                                (start[-1] >= '0' && start[-1] <= '9')))
            --start;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(end - start), start);
        CHECK(strncmp(name, "shardpoint_", 11) == 0);
        if (!dlsym(lib, name)) {
            fprintf(stderr, "declared but not exported: %s\n", name);
            ++failures;
        }
        ++count;
    }
    fclose(f);
    return count;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

int main(void) {
    lib = dlopen("libshardpoint.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen(libshardpoint.so.0): %s\n", dlerror());
        return 1;
    }
    int declared = resolve_all_declared(SP_HEADER);
    printf("resolved %d declared functions\n", declared);
    CHECK(declared >= 40);

    RESOLVE(shardpoint_version_number);
    RESOLVE(shardpoint_version_string);
    RESOLVE(shardpoint_last_error);
    RESOLVE(shardpoint_last_error_code);
    RESOLVE(shardpoint_error_name);
    RESOLVE(shardpoint_dtype_size);
    RESOLVE(shardpoint_save_new);
    RESOLVE(shardpoint_save_add_tensor);
    RESOLVE(shardpoint_save_add_bytes);
    RESOLVE(shardpoint_save_set_metadata);
    RESOLVE(shardpoint_save_commit);
    RESOLVE(shardpoint_save_free);
    RESOLVE(shardpoint_reader_open);
    RESOLVE(shardpoint_reader_free);
    RESOLVE(shardpoint_reader_metadata_get);
    RESOLVE(shardpoint_reader_read_tensor);
    RESOLVE(shardpoint_reader_read_bytes);
    RESOLVE(shardpoint_reader_verify);
    RESOLVE(shardpoint_load_new);
    RESOLVE(shardpoint_load_add_tensor);
    RESOLVE(shardpoint_load_execute);
    RESOLVE(shardpoint_load_free);

    /* the library is the one this header describes */
    CHECK(p_shardpoint_version_number() == SHARDPOINT_VERSION_NUMBER);
    CHECK(strcmp(p_shardpoint_version_string(), SHARDPOINT_VERSION_STRING) == 0);
    CHECK(p_shardpoint_dtype_size(SHARDPOINT_DTYPE_COMPLEX128) == 16);
    Dl_info where;
    CHECK(dladdr((void *)p_shardpoint_save_new, &where) && strstr(where.dli_fname, "libshardpoint.so.0"));

    const char *tmp = getenv("TMPDIR");
    char dir[4096], ckpt[4200];
    snprintf(dir, sizeof dir, "%s/sp-c-dlopen-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);

    const uint64_t shape[2] = {3, 4}, zeros[2] = {0, 0}, box_off[2] = {1, 1}, box_sz[2] = {2, 3};
    int32_t values[12];
    for (int i = 0; i < 12; ++i) values[i] = i * i - 7;
    shardpoint_save *s = NULL;
    CHECK(p_shardpoint_save_new(&s, ckpt, NULL, NULL) == 0);
    CHECK(p_shardpoint_save_add_tensor(s, "w", SHARDPOINT_DTYPE_I32, 2, shape, zeros, shape, values, NULL) == 0);
    CHECK(p_shardpoint_save_add_bytes(s, "b", "hello", 5) == 0);
    CHECK(p_shardpoint_save_set_metadata(s, "via", "dlopen") == 0);
    CHECK(p_shardpoint_save_commit(s) == 0);
    p_shardpoint_save_free(s);

    shardpoint_reader *r = NULL;
    CHECK(p_shardpoint_reader_open(&r, ckpt, NULL) == 0);
    if (r) {
        int32_t got[12] = {0}, box[6] = {0};
        CHECK(p_shardpoint_reader_read_tensor(r, "w", SHARDPOINT_DTYPE_I32, 2, zeros, shape, got, NULL) == 0);
        CHECK(memcmp(got, values, sizeof got) == 0);
        shardpoint_load *l = NULL;
        CHECK(p_shardpoint_load_new(&l, r, NULL) == 0);
        CHECK(p_shardpoint_load_add_tensor(l, "w", SHARDPOINT_DTYPE_I32, 2, box_off, box_sz, box, NULL) == 0);
        CHECK(p_shardpoint_load_execute(l) == 0);
        p_shardpoint_load_free(l);
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j) CHECK(box[i * 3 + j] == values[(i + 1) * 4 + j + 1]);
        char text[8] = {0};
        uint64_t len = 0;
        CHECK(p_shardpoint_reader_read_bytes(r, "b", text, sizeof text, &len) == 0);
        CHECK(len == 5 && memcmp(text, "hello", 5) == 0);
        const char *via = NULL;
        CHECK(p_shardpoint_reader_metadata_get(r, "via", &via) == 0 && via && strcmp(via, "dlopen") == 0);
        CHECK(p_shardpoint_reader_verify(r) == 0);
        /* errors come back through the same library */
        CHECK(p_shardpoint_reader_read_tensor(r, "w", SHARDPOINT_DTYPE_F32, 2, zeros, shape, got, NULL) ==
              SHARDPOINT_EDTYPE);
        CHECK(p_shardpoint_last_error_code() == SHARDPOINT_EDTYPE);
        CHECK(strstr(p_shardpoint_last_error(), "i32") != NULL);
        CHECK(strcmp(p_shardpoint_error_name(SHARDPOINT_EDTYPE), "SHARDPOINT_EDTYPE") == 0);
        p_shardpoint_reader_free(r);
    }
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    CHECK(dlclose(lib) == 0);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("dlopen round trip ok\n");
    return failures ? 1 : 0;
}
