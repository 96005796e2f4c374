/* An LD_PRELOAD shim for fault injection and tracing of the file-system calls shardpoint makes.
 *
 *   SHARDPOINT_FAULT="<op>:<target>:<nth>:<action>[,<op>:<target>:<nth>:<action>...]"
 *     op      a canonical operation name (open, pwrite, write, ftruncate, fsync, fdatasync,
 *             sync_file_range, close, rename, link, unlink, rmdir, mkdir, flock, sync; and the
 *             untraced open_read, a read-only open of a regular file, and pread) or "*"
 *     target  "dir" (the call is on a directory), "file" (on anything else), "*", or an
 *             fnmatch(3) glob matched against the absolute path (either path of rename/link)
 *     nth     the nth matching call (counted from 1 in this process) is the one that fails
 *     action  an errno name (EIO, ENOSPC, ...): the call fails with it and is not performed;
 *             KILL: the process SIGKILLs itself right before the call
 *   SHARDPOINT_TRACE=<file>      append one line per intercepted mutating call (see README.md)
 *   SHARDPOINT_TRACE_DATA=1      also record the bytes of every write, in hex
 *
 * Only calls that go through the dynamic linker are seen: glibc's internal calls are not, which
 * is why remove() is intercepted itself. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

#define MAX_FDS 65536
#define MAX_SPECS 8
#define MAX_TRACE_DATA (4u << 20) /* bytes of one write recorded in hex; more is recorded as "-" */

typedef struct fault_spec {
    char op[32];
    char target[512];
    long nth;
    long seen;
    int err; /* 0: KILL */
} fault_spec;

typedef struct fd_info {
    char *path;
    int is_dir;
    int writable;
} fd_info;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Held across the call and its trace line for every call but writes, flock and writeback hints,
 * so that the trace orders them as the kernel did, even between threads: an open that gets a
 * descriptor number another thread's close just released, or a mkdir that finds the directory
 * another thread just created, comes after that call in the trace. */
static pthread_mutex_t fd_order = PTHREAD_MUTEX_INITIALIZER;
/* Held shared across a write and its trace line; a KILL takes it (and fd_order) exclusively, so
 * that every call the kernel performed before the process dies is in the trace. Without it, a
 * thread killed the process between another thread's mkdir and its line, and the model then met
 * a directory it had never seen. Writer-preferring, so a stream of writes cannot starve a KILL. */
static pthread_rwlock_t recording = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static fd_info fds[MAX_FDS];
static fault_spec specs[MAX_SPECS];
static int spec_count;
static int trace_fd = -1;
static int trace_data;
static unsigned long seq;

/* The real functions. */
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static int (*real_close)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rmdir)(const char *);
static int (*real_remove)(const char *);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_flock)(int, int);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static const struct {
    const char *name;
    int value;
} errno_names[] = {
    {"EIO", EIO},         {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EEXIST", EEXIST}, {"ENOENT", ENOENT},
    {"EACCES", EACCES},   {"EPERM", EPERM},   {"EINVAL", EINVAL}, {"ENOSYS", ENOSYS}, {"EXDEV", EXDEV},
    {"EROFS", EROFS},     {"EMFILE", EMFILE}, {"ENOLCK", ENOLCK}, {"EINTR", EINTR},   {"EBADF", EBADF},
    {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR}, {"ENOTSUP", ENOTSUP}, {"EFBIG", EFBIG},
};

static void parse_specs(const char *text) {
    char *copy = strdup(text);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && spec_count < MAX_SPECS; item = strtok_r(NULL, ",", &save)) {
        /* op:target:nth:action; the target may itself contain ':' only if it is a glob we
         * split from the right. */
        char *last = strrchr(item, ':');
        if (!last) continue;
        *last = '\0';
        char *nth = strrchr(item, ':');
        if (!nth) continue;
        *nth = '\0';
        char *first = strchr(item, ':');
        if (!first) continue;
        *first = '\0';
        fault_spec *s = &specs[spec_count];
        snprintf(s->op, sizeof s->op, "%s", item);
        snprintf(s->target, sizeof s->target, "%s", first + 1);
        s->nth = atol(nth + 1);
        s->err = -1;
        if (strcmp(last + 1, "KILL") == 0) s->err = 0;
        for (size_t k = 0; k < sizeof errno_names / sizeof errno_names[0]; ++k)
            if (strcmp(last + 1, errno_names[k].name) == 0) s->err = errno_names[k].value;
        if (s->err < 0) {
            fprintf(stderr, "shardpoint fault shim: unknown action '%s'\n", last + 1);
            abort();
        }
        ++spec_count;
    }
    free(copy);
}

static void init(void) {
    RESOLVE(open);
    RESOLVE(open64);
    RESOLVE(openat);
    RESOLVE(openat64);
    RESOLVE(__open_2);
    RESOLVE(__open64_2);
    RESOLVE(__openat_2);
    RESOLVE(__openat64_2);
    RESOLVE(creat);
    RESOLVE(creat64);
    RESOLVE(pwrite);
    RESOLVE(pwrite64);
    RESOLVE(pwritev);
    RESOLVE(pwritev64);
    RESOLVE(write);
    RESOLVE(pread);
    RESOLVE(pread64);
    RESOLVE(ftruncate);
    RESOLVE(ftruncate64);
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(sync_file_range);
    RESOLVE(syncfs);
    RESOLVE(sync);
    RESOLVE(close);
    RESOLVE(rename);
    RESOLVE(renameat);
    RESOLVE(renameat2);
    RESOLVE(link);
    RESOLVE(linkat);
    RESOLVE(unlink);
    RESOLVE(unlinkat);
    RESOLVE(rmdir);
    RESOLVE(remove);
    RESOLVE(mkdir);
    RESOLVE(mkdirat);
    RESOLVE(flock);
    const char *fault = getenv("SHARDPOINT_FAULT");
    if (fault && *fault) parse_specs(fault);
    const char *trace = getenv("SHARDPOINT_TRACE");
    if (trace && *trace) {
        trace_fd = real_open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        /* Keep the trace's descriptor away from the low numbers the program under test uses. */
        if (trace_fd >= 0) {
            int high = fcntl(trace_fd, F_DUPFD_CLOEXEC, 1000);
            if (high >= 0) {
                real_close(trace_fd);
                trace_fd = high;
            }
        }
    }
    const char *data = getenv("SHARDPOINT_TRACE_DATA");
    trace_data = data && strcmp(data, "1") == 0;
}

static void ensure_init(void) { pthread_once(&once, init); }

/* Absolute, lexically normalized path ("//", "/./" and trailing "/" removed; ".." kept). */
static char *absolute(int dirfd, const char *path) {
    char base[4096] = "";
    if (!path) return strdup("?");
    if (path[0] != '/') {
        if (dirfd == AT_FDCWD || dirfd < 0 || dirfd >= MAX_FDS || !fds[dirfd].path) {
            if (!getcwd(base, sizeof base)) strcpy(base, "?");
        } else {
            snprintf(base, sizeof base, "%s", fds[dirfd].path);
        }
    }
    size_t n = strlen(base) + strlen(path) + 2;
    char *joined = malloc(n);
    snprintf(joined, n, "%s%s%s", base, base[0] ? "/" : "", path);
    char *out = malloc(n + 1);
    size_t o = 0;
    for (const char *p = joined; *p;) {
        if (*p == '/') {
            while (*p == '/') ++p;
            if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
                ++p;
                continue;
            }
            out[o++] = '/';
            continue;
        }
        out[o++] = *p++;
    }
    while (o > 1 && out[o - 1] == '/') --o;
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    free(joined);
    return out;
}

static int path_is_dir(const char *abs) {
    struct stat st;
    return stat(abs, &st) == 0 && S_ISDIR(st.st_mode);
}

static int path_exists(const char *abs) {
    struct stat st;
    return lstat(abs, &st) == 0;
}

static const char *fd_path(int fd) { return fd >= 0 && fd < MAX_FDS && fds[fd].path ? fds[fd].path : "?"; }
static int fd_is_dir(int fd) { return fd >= 0 && fd < MAX_FDS && fds[fd].path ? fds[fd].is_dir : 0; }
static int fd_tracked(int fd) { return fd >= 0 && fd < MAX_FDS && fds[fd].path != NULL; }

static int spec_matches(const fault_spec *s, const char *op, const char *p1, const char *p2, int is_dir) {
    if (strcmp(s->op, "*") != 0 && strcmp(s->op, op) != 0) return 0;
    if (strcmp(s->target, "*") == 0) return 1;
    if (strcmp(s->target, "dir") == 0) return is_dir;
    if (strcmp(s->target, "file") == 0) return !is_dir;
    if (p1 && fnmatch(s->target, p1, 0) == 0) return 1;
    if (p2 && fnmatch(s->target, p2, 0) == 0) return 1;
    return 0;
}

/* Decides the fate of a call: 0 to perform it, else the errno to fail it with. A KILL never
 * returns. Holds the lock while counting so that threads count one sequence. */
static int decide(const char *op, const char *p1, const char *p2, int is_dir, int fd) {
    if (spec_count == 0) return 0;
    int err = 0;
    pthread_mutex_lock(&lock);
    for (int k = 0; k < spec_count; ++k) {
        fault_spec *s = &specs[k];
        if (!spec_matches(s, op, p1, p2, is_dir)) continue;
        if (++s->seen != s->nth) continue;
        if (s->err == 0) {
            pthread_mutex_unlock(&lock); /* trace() of the calls in flight needs it */
            pthread_mutex_lock(&fd_order);
            pthread_rwlock_wrlock(&recording);
            pthread_mutex_lock(&lock);
            if (trace_fd >= 0) {
                char line[9000];
                int n = snprintf(line, sizeof line, "%lu\tKILL\t%s\t%s\t%s\t%d\t%d\n", ++seq, op, p1 ? p1 : "-",
                                 p2 ? p2 : "-", fd, is_dir);
                if (n > 0) real_write(trace_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            }
            kill(getpid(), SIGKILL);
            for (;;) pause();
        }
        if (!err) err = s->err; /* no break: every spec counts every call it matches */
    }
    pthread_mutex_unlock(&lock);
    return err;
}

/* One trace line: seq, "op", op, path, path2, fd, is_dir, offset, length, result, errno, flags
 * (created=1 etc.), data (hex or "-"). Tab-separated. */
static void trace(const char *op, const char *p1, const char *p2, int fd, int is_dir, long long off, long long len,
                  long long ret, int err, int injected, const char *extra, const struct iovec *iov, int iovcnt) {
    if (trace_fd < 0) return;
    size_t data_len = 0;
    for (int k = 0; iov && k < iovcnt; ++k) data_len += iov[k].iov_len;
    int with_data = trace_data && iov && ret > 0 && data_len <= MAX_TRACE_DATA;
    size_t cap = 9000 + (with_data ? 2 * data_len : 0);
    char *line = malloc(cap);
    if (!line) return;
    pthread_mutex_lock(&lock);
    int n = snprintf(line, cap, "%lu\top\t%s\t%s\t%s\t%d\t%d\t%lld\t%lld\t%lld\t%s\t%s%s%s\t", ++seq, op,
                     p1 ? p1 : "-", p2 ? p2 : "-", fd, is_dir, off, len, ret, err ? strerrorname_np(err) : "-",
                     injected ? "injected" : "", injected && extra && *extra ? "," : "", extra ? extra : "");
    size_t o = n > 0 ? (size_t)n : 0;
    if (o >= cap) o = cap - 1;
    if (with_data) {
        static const char hex[] = "0123456789abcdef";
        size_t left = (size_t)ret; /* only the bytes actually written */
        for (int k = 0; k < iovcnt && left > 0; ++k) {
            const unsigned char *b = iov[k].iov_base;
            size_t take = iov[k].iov_len < left ? iov[k].iov_len : left;
            for (size_t i = 0; i < take; ++i) {
                line[o++] = hex[b[i] >> 4];
                line[o++] = hex[b[i] & 15];
            }
            left -= take;
        }
    } else {
        line[o++] = '-';
    }
    line[o++] = '\n';
    real_write(trace_fd, line, o);
    pthread_mutex_unlock(&lock);
    free(line);
}

static void remember_fd(int fd, const char *abs, int flags) {
    if (fd < 0 || fd >= MAX_FDS) return;
    struct stat st;
    pthread_mutex_lock(&lock);
    free(fds[fd].path);
    fds[fd].path = strdup(abs);
    fds[fd].is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    fds[fd].writable = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
    pthread_mutex_unlock(&lock);
}

static void forget_fd(int fd) {
    if (fd < 0 || fd >= MAX_FDS) return;
    pthread_mutex_lock(&lock);
    free(fds[fd].path);
    fds[fd].path = NULL;
    pthread_mutex_unlock(&lock);
}

/* ---- open ---------------------------------------------------------------------------------- */

typedef int (*open_fn)(int dirfd, const char *path, int flags, mode_t mode);

static int do_open(int dirfd, const char *path, int flags, mode_t mode, const char *name, open_fn real) {
    ensure_init();
    char *abs = absolute(dirfd, path);
    const int mutating = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
    const int existed = path_exists(abs);
    const int dir_hint = (flags & O_DIRECTORY) || (existed && path_is_dir(abs));
    /* Read-only opens of regular files are not steps of a save: they are not traced, and they
     * fail only for specs of the separate op "open_read". */
    const int traced = mutating || dir_hint;
    int err = decide(traced ? "open" : "open_read", abs, NULL, dir_hint, -1);
    if (err) {
        trace("open", abs, NULL, -1, dir_hint, 0, 0, -1, err, 1, name, NULL, 0);
        free(abs);
        errno = err;
        return -1;
    }
    pthread_mutex_lock(&fd_order);
    const int existed_now = path_exists(abs); /* under the lock: "created" is exact */
    int fd = real(dirfd, path, flags, mode);
    int saved = errno;
    if (fd >= 0) remember_fd(fd, abs, flags);
    if (traced) {
        char extra[128];
        snprintf(extra, sizeof extra, "%s%s%s%s", name, (flags & O_CREAT) && !existed_now && fd >= 0 ? ",created" : "",
                 (flags & O_TRUNC) ? ",trunc" : "", (flags & O_EXCL) ? ",excl" : "");
        trace("open", abs, NULL, fd, fd >= 0 ? fd_is_dir(fd) : dir_hint, 0, 0, fd, fd < 0 ? saved : 0, 0, extra, NULL,
              0);
    }
    pthread_mutex_unlock(&fd_order);
    free(abs);
    errno = saved;
    return fd;
}

static int call_open(int dirfd, const char *path, int flags, mode_t mode) {
    (void)dirfd;
    return real_open(path, flags, mode);
}
static int call_open64(int dirfd, const char *path, int flags, mode_t mode) {
    (void)dirfd;
    return real_open64 ? real_open64(path, flags, mode) : real_open(path, flags, mode);
}
static int call_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return real_openat(dirfd, path, flags, mode);
}
static int call_openat64(int dirfd, const char *path, int flags, mode_t mode) {
    return real_openat64 ? real_openat64(dirfd, path, flags, mode) : real_openat(dirfd, path, flags, mode);
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, mode, "open", call_open);
}
int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, mode, "open64", call_open64);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, mode, "openat", call_openat);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, mode, "openat64", call_openat64);
}
int __open_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, "__open_2", call_open); }
int __open64_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, "__open64_2", call_open64); }
int __openat_2(int dirfd, const char *path, int flags) {
    return do_open(dirfd, path, flags, 0, "__openat_2", call_openat);
}
int __openat64_2(int dirfd, const char *path, int flags) {
    return do_open(dirfd, path, flags, 0, "__openat64_2", call_openat64);
}
int creat(const char *path, mode_t mode) {
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, "creat", call_open);
}
int creat64(const char *path, mode_t mode) {
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, "creat64", call_open64);
}

/* ---- writes -------------------------------------------------------------------------------- */

static ssize_t do_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off, int positioned, const char *name,
                          ssize_t (*perform)(int, const struct iovec *, int, off_t)) {
    ensure_init();
    /* Writes to descriptors the shim did not see opened (stdout, pipes) are not steps. */
    if (!fd_tracked(fd) || fd == trace_fd) return perform(fd, iov, iovcnt, off);
    const char *op = positioned ? "pwrite" : "write";
    long long len = 0;
    for (int k = 0; k < iovcnt; ++k) len += (long long)iov[k].iov_len;
    long long at = positioned ? (long long)off : (long long)lseek(fd, 0, SEEK_CUR);
    char *path = strdup(fd_path(fd));
    int err = decide(op, path, NULL, fd_is_dir(fd), fd);
    if (err) {
        trace(op, path, NULL, fd, fd_is_dir(fd), at, len, -1, err, 1, name, NULL, 0);
        free(path);
        errno = err;
        return -1;
    }
    pthread_rwlock_rdlock(&recording);
    ssize_t n = perform(fd, iov, iovcnt, off);
    int saved = errno;
    trace(op, path, NULL, fd, fd_is_dir(fd), at, len, n, n < 0 ? saved : 0, 0, name, iov, iovcnt);
    pthread_rwlock_unlock(&recording);
    free(path);
    errno = saved;
    return n;
}

static ssize_t perform_pwrite(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    (void)iovcnt;
    return real_pwrite(fd, iov[0].iov_base, iov[0].iov_len, off);
}
static ssize_t perform_pwrite64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    (void)iovcnt;
    return (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, iov[0].iov_base, iov[0].iov_len, off);
}
static ssize_t perform_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    return real_pwritev(fd, iov, iovcnt, off);
}
static ssize_t perform_pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    return (real_pwritev64 ? real_pwritev64 : real_pwritev)(fd, iov, iovcnt, off);
}
static ssize_t perform_write(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    (void)iovcnt, (void)off;
    return real_write(fd, iov[0].iov_base, iov[0].iov_len);
}

/* Reads are never traced; "pread" specs can fail them (a metadata file that cannot be read must
 * not be taken for one that is not there). */

static ssize_t do_pread(int fd, void *buf, size_t len, off_t off, ssize_t (*perform)(int, void *, size_t, off_t)) {
    ensure_init();
    if (spec_count > 0 && fd_tracked(fd)) {
        char *path = strdup(fd_path(fd));
        int err = decide("pread", path, NULL, fd_is_dir(fd), fd);
        free(path);
        if (err) {
            errno = err;
            return -1;
        }
    }
    return perform(fd, buf, len, off);
}

ssize_t pread(int fd, void *buf, size_t len, off_t off) {
    ensure_init();
    return do_pread(fd, buf, len, off, real_pread);
}
ssize_t pread64(int fd, void *buf, size_t len, off_t off) {
    ensure_init();
    return do_pread(fd, buf, len, off, real_pread64 ? real_pread64 : real_pread);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    struct iovec v = {(void *)buf, len};
    return do_pwritev(fd, &v, 1, off, 1, "pwrite", perform_pwrite);
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    struct iovec v = {(void *)buf, len};
    return do_pwritev(fd, &v, 1, off, 1, "pwrite64", perform_pwrite64);
}
ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    return do_pwritev(fd, iov, iovcnt, off, 1, "pwritev", perform_pwritev);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    return do_pwritev(fd, iov, iovcnt, off, 1, "pwritev64", perform_pwritev64);
}
ssize_t write(int fd, const void *buf, size_t len) {
    ensure_init();
    if (!fd_tracked(fd) || fd == trace_fd) return real_write(fd, buf, len);
    struct iovec v = {(void *)buf, len};
    return do_pwritev(fd, &v, 1, 0, 0, "write", perform_write);
}

/* ---- calls on a descriptor ----------------------------------------------------------------- */

static int do_fd_call(const char *op, int fd, long long off, long long len, const char *name, int (*perform)(int, off_t, off_t, unsigned),
                      off_t a, off_t b, unsigned c) {
    ensure_init();
    char *path = strdup(fd_path(fd));
    int is_dir = fd_is_dir(fd);
    int err = decide(op, path, NULL, is_dir, fd);
    if (err) {
        trace(op, path, NULL, fd, is_dir, off, len, -1, err, 1, name, NULL, 0);
        free(path);
        errno = err;
        return -1;
    }
    const int ordered = strcmp(op, "flock") != 0 && strcmp(op, "sync_file_range") != 0;
    if (ordered) pthread_mutex_lock(&fd_order);
    int r = perform(fd, a, b, c);
    int saved = errno;
    trace(op, path, NULL, fd, is_dir, off, len, r, r < 0 ? saved : 0, 0, name, NULL, 0);
    if (ordered) pthread_mutex_unlock(&fd_order);
    free(path);
    errno = saved;
    return r;
}

static int perform_ftruncate(int fd, off_t a, off_t b, unsigned c) {
    (void)b, (void)c;
    return real_ftruncate(fd, a);
}
static int perform_ftruncate64(int fd, off_t a, off_t b, unsigned c) {
    (void)b, (void)c;
    return (real_ftruncate64 ? real_ftruncate64 : real_ftruncate)(fd, a);
}
static int perform_fsync(int fd, off_t a, off_t b, unsigned c) {
    (void)a, (void)b, (void)c;
    return real_fsync(fd);
}
static int perform_fdatasync(int fd, off_t a, off_t b, unsigned c) {
    (void)a, (void)b, (void)c;
    return real_fdatasync(fd);
}
static int perform_sync_file_range(int fd, off_t a, off_t b, unsigned c) { return real_sync_file_range(fd, a, b, c); }
static int perform_syncfs(int fd, off_t a, off_t b, unsigned c) {
    (void)a, (void)b, (void)c;
    return real_syncfs(fd);
}
static int perform_flock(int fd, off_t a, off_t b, unsigned c) {
    (void)b, (void)c;
    return real_flock(fd, (int)a);
}

int ftruncate(int fd, off_t len) { return do_fd_call("ftruncate", fd, 0, len, "ftruncate", perform_ftruncate, len, 0, 0); }
int ftruncate64(int fd, off_t len) {
    return do_fd_call("ftruncate", fd, 0, len, "ftruncate64", perform_ftruncate64, len, 0, 0);
}
int fsync(int fd) { return do_fd_call("fsync", fd, 0, 0, "fsync", perform_fsync, 0, 0, 0); }
int fdatasync(int fd) { return do_fd_call("fdatasync", fd, 0, 0, "fdatasync", perform_fdatasync, 0, 0, 0); }
int sync_file_range(int fd, off_t off, off_t len, unsigned int flags) {
    return do_fd_call("sync_file_range", fd, off, len, "sync_file_range", perform_sync_file_range, off, len, flags);
}
int syncfs(int fd) { return do_fd_call("sync", fd, 0, 0, "syncfs", perform_syncfs, 0, 0, 0); }
void sync(void) {
    ensure_init();
    if (decide("sync", "/", NULL, 1, -1) != 0) return; /* sync cannot fail: an injection skips it */
    pthread_mutex_lock(&fd_order);
    real_sync();
    trace("sync", "/", NULL, -1, 1, 0, 0, 0, 0, 0, "sync", NULL, 0);
    pthread_mutex_unlock(&fd_order);
}
int flock(int fd, int operation) {
    return do_fd_call("flock", fd, 0, operation, "flock", perform_flock, operation, 0, 0);
}

int close(int fd) {
    ensure_init();
    if (fd == trace_fd && fd >= 0) return real_close(fd); /* never traced, never failed */
    if (!fd_tracked(fd)) return real_close(fd);
    char *path = strdup(fd_path(fd));
    int is_dir = fd_is_dir(fd);
    int traced = fds[fd].writable || is_dir;
    int err = traced ? decide("close", path, NULL, is_dir, fd) : 0;
    pthread_mutex_lock(&fd_order);
    if (err) {
        /* Linux frees the descriptor even when close reports an error: do the same. */
        forget_fd(fd);
        real_close(fd);
        trace("close", path, NULL, fd, is_dir, 0, 0, -1, err, 1, "close", NULL, 0);
        pthread_mutex_unlock(&fd_order);
        free(path);
        errno = err;
        return -1;
    }
    forget_fd(fd);
    int r = real_close(fd);
    int saved = errno;
    if (traced) trace("close", path, NULL, fd, is_dir, 0, 0, r, r < 0 ? saved : 0, 0, "close", NULL, 0);
    pthread_mutex_unlock(&fd_order);
    free(path);
    errno = saved;
    return r;
}

/* ---- namespace operations ------------------------------------------------------------------ */

typedef int (*path2_fn)(int, const char *, int, const char *, unsigned);

static int do_path2(const char *op, const char *name, int d1, const char *a, int d2, const char *b, unsigned flags,
                    path2_fn perform) {
    ensure_init();
    char *p1 = absolute(d1, a), *p2 = absolute(d2, b);
    int is_dir = path_is_dir(p1);
    const int replaced = path_exists(p2);
    int err = decide(op, p1, p2, is_dir, -1);
    char extra[96];
    snprintf(extra, sizeof extra, "%s%s%s", name, (flags & RENAME_NOREPLACE) ? ",noreplace" : "",
             replaced ? ",replaced" : "");
    if (err) {
        trace(op, p1, p2, -1, is_dir, 0, 0, -1, err, 1, extra, NULL, 0);
        free(p1), free(p2);
        errno = err;
        return -1;
    }
    pthread_mutex_lock(&fd_order);
    int r = perform(d1, a, d2, b, flags);
    int saved = errno;
    trace(op, p1, p2, -1, is_dir, 0, 0, r, r < 0 ? saved : 0, 0, extra, NULL, 0);
    pthread_mutex_unlock(&fd_order);
    free(p1), free(p2);
    errno = saved;
    return r;
}

static int perform_rename(int d1, const char *a, int d2, const char *b, unsigned f) {
    (void)d1, (void)d2, (void)f;
    return real_rename(a, b);
}
static int perform_renameat(int d1, const char *a, int d2, const char *b, unsigned f) {
    (void)f;
    return real_renameat(d1, a, d2, b);
}
static int perform_renameat2(int d1, const char *a, int d2, const char *b, unsigned f) {
    return real_renameat2(d1, a, d2, b, f);
}
static int perform_link(int d1, const char *a, int d2, const char *b, unsigned f) {
    (void)d1, (void)d2, (void)f;
    return real_link(a, b);
}
static int perform_linkat(int d1, const char *a, int d2, const char *b, unsigned f) {
    return real_linkat(d1, a, d2, b, (int)f);
}

int rename(const char *a, const char *b) {
    return do_path2("rename", "rename", AT_FDCWD, a, AT_FDCWD, b, 0, perform_rename);
}
int renameat(int d1, const char *a, int d2, const char *b) {
    return do_path2("rename", "renameat", d1, a, d2, b, 0, perform_renameat);
}
int renameat2(int d1, const char *a, int d2, const char *b, unsigned int flags) {
    return do_path2("rename", "renameat2", d1, a, d2, b, flags, perform_renameat2);
}
int link(const char *a, const char *b) { return do_path2("link", "link", AT_FDCWD, a, AT_FDCWD, b, 0, perform_link); }
int linkat(int d1, const char *a, int d2, const char *b, int flags) {
    /* AT_SYMLINK_FOLLOW is the only linkat flag; it does not collide with RENAME_NOREPLACE's bit
     * as recorded, because the "noreplace" note is only meaningful for rename. */
    return do_path2("link", "linkat", d1, a, d2, b, (unsigned)flags & ~RENAME_NOREPLACE, perform_linkat);
}

typedef int (*path1_fn)(int dirfd, const char *path, int arg);

static int do_path1(const char *op, const char *name, int dirfd, const char *path, int arg, path1_fn perform) {
    ensure_init();
    char *abs = absolute(dirfd, path);
    int is_dir = path_is_dir(abs);
    if (strcmp(op, "mkdir") == 0) is_dir = 1;
    int err = decide(op, abs, NULL, is_dir, -1);
    if (err) {
        trace(op, abs, NULL, -1, is_dir, 0, 0, -1, err, 1, name, NULL, 0);
        free(abs);
        errno = err;
        return -1;
    }
    pthread_mutex_lock(&fd_order);
    int r = perform(dirfd, path, arg);
    int saved = errno;
    char extra[64];
    snprintf(extra, sizeof extra, "%s%s", name, strcmp(op, "mkdir") == 0 && r == 0 ? ",created" : "");
    trace(op, abs, NULL, -1, is_dir, 0, 0, r, r < 0 ? saved : 0, 0, extra, NULL, 0);
    pthread_mutex_unlock(&fd_order);
    free(abs);
    errno = saved;
    return r;
}

static int perform_unlink(int d, const char *p, int a) {
    (void)d, (void)a;
    return real_unlink(p);
}
static int perform_unlinkat(int d, const char *p, int a) { return real_unlinkat(d, p, a); }
static int perform_rmdir(int d, const char *p, int a) {
    (void)d, (void)a;
    return real_rmdir(p);
}
static int perform_remove(int d, const char *p, int a) {
    (void)d, (void)a;
    return real_remove(p);
}
static int perform_mkdir(int d, const char *p, int a) {
    (void)d;
    return real_mkdir(p, (mode_t)a);
}
static int perform_mkdirat(int d, const char *p, int a) { return real_mkdirat(d, p, (mode_t)a); }

int unlink(const char *path) { return do_path1("unlink", "unlink", AT_FDCWD, path, 0, perform_unlink); }
int unlinkat(int dirfd, const char *path, int flags) {
    return do_path1((flags & AT_REMOVEDIR) ? "rmdir" : "unlink", "unlinkat", dirfd, path, flags, perform_unlinkat);
}
int rmdir(const char *path) { return do_path1("rmdir", "rmdir", AT_FDCWD, path, 0, perform_rmdir); }
int remove(const char *path) {
    ensure_init();
    char *abs = absolute(AT_FDCWD, path);
    int dir = path_is_dir(abs);
    free(abs);
    return do_path1(dir ? "rmdir" : "unlink", "remove", AT_FDCWD, path, 0, perform_remove);
}
int mkdir(const char *path, mode_t mode) { return do_path1("mkdir", "mkdir", AT_FDCWD, path, (int)mode, perform_mkdir); }
int mkdirat(int dirfd, const char *path, mode_t mode) {
    return do_path1("mkdir", "mkdirat", dirfd, path, (int)mode, perform_mkdirat);
}
