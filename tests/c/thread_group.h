/* A group of `size` threads of this process acting as ranks, talking through the callback
 * communicator (gather to rank 0 / broadcast from rank 0 over a mutex and condition variable). */
#ifndef SP_THREAD_GROUP_H
#define SP_THREAD_GROUP_H

#include "shardpoint.h"

typedef struct sp_group sp_group;
sp_group *group_new(int size);
void group_free(sp_group *group);
/* Rank `rank`'s communicator (shardpoint_comm_free it; the group must outlive it). */
int group_comm(sp_group *group, int rank, shardpoint_comm **out);

#endif
