/* Ranks as threads of one process: a callback communicator over a mutex and a condition
 * variable. Shared by the C tests and the C golden program. */
#include "thread_group.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Every collective is one round: each rank deposits its buffer pointer; when all have arrived,
 * rank 0 copies (gather: everyone's send into its recv; broadcast: its buf into everyone's) and
 * opens the next round. Non-root ranks return only after rank 0 has copied, so their buffers are
 * valid throughout. */
struct sp_group {
    int size;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int arrived;
    uint64_t round;
    void **slots;
};

typedef struct member {
    sp_group *group;
    int rank;
} member;

sp_group *group_new(int size) {
    sp_group *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->size = size;
    g->slots = calloc((size_t)size, sizeof *g->slots);
    pthread_mutex_init(&g->mutex, NULL);
    pthread_cond_init(&g->cond, NULL);
    return g;
}

void group_free(sp_group *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mutex);
    pthread_cond_destroy(&g->cond);
    free(g->slots);
    free(g);
}

static void exchange(member *m, const void *send, void *buf, uint64_t len, int is_gather) {
    sp_group *g = m->group;
    pthread_mutex_lock(&g->mutex);
    const uint64_t round = g->round;
    g->slots[m->rank] = is_gather ? (void *)send : buf;
    if (++g->arrived == g->size) pthread_cond_broadcast(&g->cond);
    if (m->rank == 0) {
        while (g->arrived != g->size) pthread_cond_wait(&g->cond, &g->mutex);
        for (int r = 0; r < g->size; ++r) {
            if (is_gather) memcpy((unsigned char *)buf + (uint64_t)r * len, g->slots[r], len);
            else if (r != 0) memcpy(g->slots[r], buf, len);
        }
        g->arrived = 0;
        ++g->round;
        pthread_cond_broadcast(&g->cond);
    } else {
        while (g->round == round) pthread_cond_wait(&g->cond, &g->mutex);
    }
    pthread_mutex_unlock(&g->mutex);
}

static int cb_gather(void *user, const void *send, uint64_t len, void *recv) {
    exchange(user, send, recv, len, 1);
    return 0;
}

static int cb_broadcast(void *user, void *buf, uint64_t len) {
    exchange(user, NULL, buf, len, 0);
    return 0;
}

static void cb_destroy(void *user) { free(user); }

int group_comm(sp_group *g, int rank, shardpoint_comm **out) {
    shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
    member *m = malloc(sizeof *m);
    if (!m) return SHARDPOINT_ENOMEM;
    m->group = g;
    m->rank = rank;
    cb.rank = rank;
    cb.size = g->size;
    cb.user = m;
    cb.gather = cb_gather;
    cb.broadcast = cb_broadcast;
    cb.destroy = cb_destroy;
    int rc = shardpoint_comm_new_callbacks(out, &cb);
    if (rc != 0) free(m);
    return rc;
}

