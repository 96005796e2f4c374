// The C ABI: communicators.
#include "internal.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

namespace {

class CallbackComm final : public Comm {
public:
    explicit CallbackComm(const shardpoint_comm_callbacks &cb) : cb_(cb) {}
    ~CallbackComm() override {
        if (cb_.destroy) cb_.destroy(cb_.user);
    }
    int rank() const override { return cb_.rank; }
    int size() const override { return cb_.size; }
    void gather(const void *send, uint64_t len, void *recv) override {
        if (cb_.gather(cb_.user, send, len, rank() == 0 ? recv : nullptr) != 0)
            throw Error(Code::comm, "the communicator's gather callback failed");
    }
    void broadcast(void *buf, uint64_t len) override {
        if (cb_.broadcast(cb_.user, buf, len) != 0) throw Error(Code::comm, "the communicator's broadcast callback failed");
    }

private:
    shardpoint_comm_callbacks cb_;
};

}  // namespace

extern "C" {

int shardpoint_comm_new_single(shardpoint_comm **out) {
    return guarded([&] {
        need(out, "out");
        *out = new shardpoint_comm{std::make_unique<SingleComm>()};
    });
}

int shardpoint_comm_callbacks_init(shardpoint_comm_callbacks *callbacks, uint32_t version) {
    return guarded([&] {
        need(callbacks, "callbacks");
        if (version != SHARDPOINT_COMM_CALLBACKS_VERSION) throw Error(Code::invalid_argument, "unsupported callbacks version");
        *callbacks = shardpoint_comm_callbacks SHARDPOINT_COMM_CALLBACKS_INIT;
    });
}

int shardpoint_comm_new_callbacks(shardpoint_comm **out, const shardpoint_comm_callbacks *cb) {
    return guarded([&] {
        need(out, "out");
        need(cb, "callbacks");
        if (cb->version != SHARDPOINT_COMM_CALLBACKS_VERSION) throw Error(Code::invalid_argument, "unsupported callbacks version");
        if (cb->size < 1 || cb->rank < 0 || cb->rank >= cb->size)
            throw Error(Code::invalid_argument, "rank " + std::to_string(cb->rank) + " is not in a job of " + std::to_string(cb->size));
        if (!cb->gather || !cb->broadcast) throw Error(Code::invalid_argument, "gather and broadcast callbacks are required");
        *out = new shardpoint_comm{std::make_unique<CallbackComm>(*cb)};
    });
}

int shardpoint_comm_rank(const shardpoint_comm *comm, int32_t *out_rank) {
    return guarded([&] {
        need(comm, "comm");
        need(out_rank, "out_rank");
        *out_rank = comm->impl->rank();
    });
}

int shardpoint_comm_size(const shardpoint_comm *comm, int32_t *out_size) {
    return guarded([&] {
        need(comm, "comm");
        need(out_size, "out_size");
        *out_size = comm->impl->size();
    });
}

void shardpoint_comm_free(shardpoint_comm *comm) { delete comm; }

}  // extern "C"
