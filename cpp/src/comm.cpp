#include "shardpoint/comm.hpp"

#include <algorithm>
#include <cstring>

#include "shardpoint/wire.hpp"

namespace shardpoint {

void SingleComm::gather(const void *send, uint64_t len, void *recv) {
    if (len) std::memcpy(recv, send, len);
}

std::vector<std::string> gather_strings(Comm &comm, const std::string &mine) {
    // Fixed-size collectives only: agree on the longest message, then gather padded copies.
    uint64_t my_len = mine.size();
    std::vector<uint64_t> lengths(comm.rank() == 0 ? comm.size() : 0);
    comm.gather(&my_len, sizeof my_len, comm.rank() == 0 ? lengths.data() : nullptr);
    uint64_t longest = 0;
    for (uint64_t n : lengths) longest = std::max(longest, n);
    comm.broadcast(&longest, sizeof longest);
    if (my_len > longest) throw Error(Code::comm, "communicator broadcast returned an inconsistent length");
    std::string padded = mine;
    padded.resize(longest);
    std::string all(comm.rank() == 0 ? longest * comm.size() : 0, '\0');
    comm.gather(padded.data(), longest, comm.rank() == 0 ? &all[0] : nullptr);
    std::vector<std::string> out;
    if (comm.rank() == 0)
        for (int r = 0; r < comm.size(); ++r) out.push_back(all.substr(r * longest, lengths[r]));
    return out;
}

std::string broadcast_string(Comm &comm, const std::string &on_root) {
    uint64_t len = on_root.size();
    comm.broadcast(&len, sizeof len);
    std::string s = comm.rank() == 0 ? on_root : std::string(len, '\0');
    if (len) comm.broadcast(&s[0], len);
    return s;
}

Status agree_on_status(Comm &comm, const Status &mine) {
    WireWriter w;
    w.u32(uint32_t(mine.code));
    w.str(mine.message);
    auto all = gather_strings(comm, w.take());
    Status first;
    for (size_t r = 0; r < all.size(); ++r) {
        WireReader rd(all[r]);
        int code = int(rd.u32());
        std::string message = rd.str();
        if (code != 0 && first.code == 0) first = Status{code, int(r), message};
    }
    WireWriter out;
    out.u32(uint32_t(first.code));
    out.u32(uint32_t(first.rank));
    out.str(first.message);
    WireReader rd(broadcast_string(comm, out.take()));
    Status agreed;
    agreed.code = int(rd.u32());
    agreed.rank = int(rd.u32());
    agreed.message = rd.str();
    return agreed;
}

}  // namespace shardpoint
