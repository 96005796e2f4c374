// The collective helpers over a thread-based communicator (ranks are threads).
#include "shardpoint/comm.hpp"
#include "test_util.hpp"

using namespace shardpoint;
using sptest::run_ranks;

namespace {

// Rank r's message: varying lengths (rank 2's is empty) and bytes that include NULs.
std::string message_of(int r) {
    if (r == 2) return "";
    std::string s;
    for (int k = 0; k < 10 + 37 * r; ++k) s.push_back(char((k * 7 + r) % 256));
    s[0] = '\0';
    return s;
}

}  // namespace

TEST(CommHelpers, GatherStringsDeliversEveryRanksBytesToRoot) {
    for (int world : {1, 2, 5}) {
        std::vector<std::vector<std::string>> got(world);
        auto results = run_ranks(world, [&](int r, Comm &comm) { got[r] = gather_strings(comm, message_of(r)); });
        for (int r = 0; r < world; ++r) ASSERT_TRUE(results[r].ok) << results[r].message;
        ASSERT_EQ(got[0].size(), size_t(world));
        for (int r = 0; r < world; ++r) EXPECT_EQ(got[0][r], message_of(r)) << "world " << world << " rank " << r;
        for (int r = 1; r < world; ++r) EXPECT_TRUE(got[r].empty()) << "non-root rank " << r << " receives nothing";
    }
}

TEST(CommHelpers, GatherStringsAllEmpty) {
    std::vector<std::string> root;
    auto results = run_ranks(3, [&](int r, Comm &comm) {
        auto all = gather_strings(comm, "");
        if (r == 0) root = all;
    });
    EXPECT_EQ(root, std::vector<std::string>(3, ""));
}

TEST(CommHelpers, BroadcastStringReachesEveryRank) {
    const std::string big(100000, 'x');
    for (const std::string &payload : {std::string(), std::string("hello\0world", 11), big}) {
        std::vector<std::string> got(4);
        run_ranks(4, [&](int r, Comm &comm) { got[r] = broadcast_string(comm, r == 0 ? payload : "ignored on non-root"); });
        for (int r = 0; r < 4; ++r) EXPECT_EQ(got[r], payload) << "rank " << r;
    }
}

TEST(CommHelpers, SingleCommIsTheIdentity) {
    SingleComm single;
    EXPECT_EQ(gather_strings(single, "abc"), std::vector<std::string>{"abc"});
    EXPECT_EQ(broadcast_string(single, "xyz"), "xyz");
    Status ok = agree_on_status(single, Status{});
    EXPECT_EQ(ok.code, 0);
}

TEST(CommHelpers, AgreeOnStatusAllOk) {
    std::vector<Status> got(4);
    run_ranks(4, [&](int r, Comm &comm) { got[r] = agree_on_status(comm, Status{}); });
    for (int r = 0; r < 4; ++r) {
        EXPECT_EQ(got[r].code, 0) << "rank " << r;
        EXPECT_EQ(got[r].rank, -1) << "rank " << r;
    }
}

TEST(CommHelpers, AgreeOnStatusReportsTheLowestFailingRankEverywhere) {
    std::vector<Status> got(5);
    run_ranks(5, [&](int r, Comm &comm) {
        Status mine;
        if (r == 2) mine = Status{int(Code::checksum), -1, "rank two saw a bad block"};
        if (r == 4) mine = Status{int(Code::io), -1, "rank four could not read"};
        got[r] = agree_on_status(comm, mine);
    });
    for (int r = 0; r < 5; ++r) {
        EXPECT_EQ(got[r].code, int(Code::checksum)) << "rank " << r;
        EXPECT_EQ(got[r].rank, 2) << "rank " << r;
        EXPECT_EQ(got[r].message, "rank two saw a bad block") << "rank " << r;
    }
}

TEST(CommHelpers, AgreeOnStatusWhenOnlyTheRootFails) {
    std::vector<Status> got(3);
    run_ranks(3, [&](int r, Comm &comm) {
        got[r] = agree_on_status(comm, r == 0 ? Status{int(Code::not_found), -1, "root lost a file"} : Status{});
    });
    for (int r = 0; r < 3; ++r) {
        EXPECT_EQ(got[r].code, int(Code::not_found));
        EXPECT_EQ(got[r].rank, 0);
        EXPECT_EQ(got[r].message, "root lost a file");
    }
}

TEST(CommHelpers, ManyCollectivesInARowStayInStep) {
    // A stress of the rendezvous: 200 rounds, each rank's message depends on the round.
    std::vector<int> mismatches(4, 0);
    run_ranks(4, [&](int r, Comm &comm) {
        for (int round = 0; round < 200; ++round) {
            std::string mine = std::to_string(round * 10 + r);
            auto all = gather_strings(comm, mine);
            std::string echoed = broadcast_string(comm, r == 0 ? all.back() : "");
            if (echoed != std::to_string(round * 10 + 3)) ++mismatches[r];
        }
    });
    EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}
