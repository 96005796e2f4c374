// What the commands of the shardpoint tool share: usage errors, human-readable sizes, JSON
// strings, and the progress line of long commands (verify, convert), which Ctrl-C cancels.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace cli {

inline int usage_error(const std::string &message) {
    std::fprintf(stderr, "shardpoint: %s\nTry 'shardpoint --help'.\n", message.c_str());
    return 2;
}

inline std::string human_bytes(double n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) n /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

inline std::string json_string(const char *s) {
    std::string out = "\"";
    for (const unsigned char *p = reinterpret_cast<const unsigned char *>(s); *p; ++p) {
        if (*p == '"' || *p == '\\') out += '\\', out += char(*p);
        else if (*p < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", *p);
            out += buf;
        } else out += char(*p);
    }
    return out + "\"";
}

inline const char *plural(uint64_t n, const char *one, const char *many) { return n == 1 ? one : many; }

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string rate(uint64_t bytes, double seconds) {
    return seconds > 0 ? human_bytes(double(bytes) / seconds) + "/s" : "-";
}

// The progress of one long command, for the library's progress callback (shardpoint.h): on a
// terminal one line on stderr redrawn in place (bytes, percent, throughput), otherwise a plain
// line at every tenth of the way. While it exists, Ctrl-C cancels the operation through the
// callback (the library then fails it with SHARDPOINT_ECANCELED and leaves nothing half-done).
class ProgressLine {
public:
    explicit ProgressLine(const char *command)
        : command_(command), terminal_(::isatty(STDERR_FILENO) == 1), start_(std::chrono::steady_clock::now()) {
        interrupted() = 0;
        struct sigaction action;
        std::memset(&action, 0, sizeof action);
        action.sa_handler = [](int) { interrupted() = 1; };
        sigaction(SIGINT, &action, &previous_);
    }
    ~ProgressLine() {
        sigaction(SIGINT, &previous_, nullptr);
        end_line();
    }
    ProgressLine(const ProgressLine &) = delete;
    ProgressLine &operator=(const ProgressLine &) = delete;

    // The callback (shardpoint_progress_callback) and its user pointer.
    static int callback(void *user, int32_t, uint64_t done, uint64_t total) {
        return static_cast<ProgressLine *>(user)->report(done, total);
    }
    double elapsed() const { return seconds_since(start_); }
    // Ends a redrawn line, so that what is printed next starts on a line of its own.
    void end_line() {
        if (drawn_) std::fputc('\n', stderr);
        drawn_ = false;
    }

private:
    static volatile std::sig_atomic_t &interrupted() {
        static volatile std::sig_atomic_t flag = 0;
        return flag;
    }
    int report(uint64_t done, uint64_t total) {
        if (interrupted()) return 1;
        const int percent = total ? int(done * 100 / total) : 100;
        if (terminal_) {
            if (finished_) return 0;
            std::fprintf(stderr, "\r  %s of %s (%d%%), %s   ", human_bytes(double(done)).c_str(),
                         human_bytes(double(total)).c_str(), percent, rate(done, elapsed()).c_str());
            drawn_ = true;
            // At the end the line is finished, so that reports printed next start on their own.
            if (done == total) end_line(), finished_ = true;
        } else if (percent / 10 > tenths_printed_) {
            tenths_printed_ = percent / 10;
            std::fprintf(stderr, "%s: %" PRIu64 " of %" PRIu64 " bytes (%d%%), %s\n", command_, done, total, percent,
                         rate(done, elapsed()).c_str());
        }
        std::fflush(stderr);
        return 0;
    }

    const char *command_;
    bool terminal_;
    std::chrono::steady_clock::time_point start_;
    int tenths_printed_ = -1;
    bool drawn_ = false, finished_ = false;
    struct sigaction previous_;
};

}  // namespace cli
