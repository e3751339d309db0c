// The simulated board: a Verilator model of a board's top level (ports clk, rst, uart_rx,
// uart_tx) with its UART pins bridged to a pseudo-terminal or a TCP socket.
//
//   tervit_board (--pty | --tcp PORT) --clks-per-bit N [--max-payload N] [--flip P]
//                [--drop P] [--seed S] [--stall-ms MS]
//
// On start it prints one line to stdout, "READY pty /dev/pts/N" or "READY tcp 127.0.0.1:PORT",
// then serves until SIGTERM/SIGINT (or its parent dies).  SIGUSR1 resets the design.
// On exit it prints one stats line to stderr.
//
// Simulated time vs wall time: the clock only runs while there is work.  The harness follows
// the host->board byte stream with the protocol's framing rules (sync, LEN <= max_payload,
// LEN + 10 bytes); while a frame is incomplete and no byte is waiting it stops the clock and
// waits for the host (up to --stall-ms of wall time, after which it runs the clock again so
// the board's receive timeout drops the partial frame).  So a slow host never sees a frame
// dropped, and a host that really abandons a frame sees the board resynchronise.  Outside a
// frame the clock runs (the board may be computing); after a long quiet spell it is throttled
// so an idle board does not burn a CPU core.
#include <verilated.h>
#include "Vtop.h"

#include <arpa/inet.h>
#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

static volatile sig_atomic_t g_stop = 0, g_reset = 0;
static void on_stop(int) { g_stop = 1; }
static void on_reset(int) { g_reset = 1; }

struct Options {
    bool pty = true;
    int tcp_port = 0;
    int clks_per_bit = 4;
    int max_payload = 65535;
    double flip = 0.0, drop = 0.0;
    uint64_t seed = 1;
    int stall_ms = 300;
};

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s (--pty | --tcp PORT) [--clks-per-bit N] [--max-payload N] [--flip P]\n"
            "          [--drop P] [--seed S] [--stall-ms MS]\n", argv0);
    exit(2);
}

static Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> const char * { if (i + 1 >= argc) usage(argv[0]); return argv[++i]; };
        if (a == "--pty") o.pty = true;
        else if (a == "--tcp") { o.pty = false; o.tcp_port = atoi(val()); }
        else if (a == "--clks-per-bit") o.clks_per_bit = atoi(val());
        else if (a == "--max-payload") o.max_payload = atoi(val());
        else if (a == "--flip") o.flip = atof(val());
        else if (a == "--drop") o.drop = atof(val());
        else if (a == "--seed") o.seed = strtoull(val(), nullptr, 0);
        else if (a == "--stall-ms") o.stall_ms = atoi(val());
        else if (a.rfind("+verilator", 0) == 0) continue;
        else usage(argv[0]);
    }
    if (o.clks_per_bit < 2) { fprintf(stderr, "clks-per-bit must be >= 2\n"); exit(2); }
    return o;
}

// Faults on a byte stream: a byte is dropped with probability `drop`, else one random bit of
// it is flipped with probability `flip`.
struct Faults {
    std::mt19937_64 rng;
    std::uniform_real_distribution<double> u{0.0, 1.0};
    double flip, drop;
    uint64_t flipped = 0, dropped = 0;
    Faults(double f, double d, uint64_t seed) : rng(seed), flip(f), drop(d) {}
    bool apply(uint8_t &b) {
        if (drop > 0 && u(rng) < drop) { dropped++; return false; }
        if (flip > 0 && u(rng) < flip) { b ^= (uint8_t)(1u << (rng() & 7)); flipped++; }
        return true;
    }
};

// Follows host->board framing as the board's decoder does, to know when a frame is open.
struct FrameTracker {
    enum { HUNT0, HUNT1, LEN0, LEN1, BODY } st = HUNT0;
    int max_payload;
    uint32_t len = 0, left = 0;
    explicit FrameTracker(int mp) : max_payload(mp) {}
    bool open() const { return st != HUNT0; }
    void reset() { st = HUNT0; }
    void push(uint8_t b) {
        switch (st) {
        case HUNT0: if (b == 0xA5) st = HUNT1; break;
        case HUNT1: st = (b == 0x5A) ? LEN0 : (b == 0xA5 ? HUNT1 : HUNT0); break;
        case LEN0: len = b; st = LEN1; break;
        case LEN1:
            len |= (uint32_t)b << 8;
            if ((int)len > max_payload) st = HUNT0;
            else { left = len + 2 + 4; st = BODY; }
            break;
        case BODY: if (--left == 0) st = HUNT0; break;
        }
    }
};

struct UartTx {                 // harness -> design (drives uart_rx)
    int cpb; uint16_t shift = 0; int bits = 0, count = 0;
    explicit UartTx(int c) : cpb(c) {}
    bool busy() const { return bits > 0; }
    void load(uint8_t b) { shift = (uint16_t)((1u << 9) | ((uint32_t)b << 1)); bits = 10; count = cpb; }
    int line() const { return busy() ? (shift & 1) : 1; }
    void tick() {
        if (!busy()) return;
        if (--count == 0) { shift >>= 1; bits--; count = cpb; }
    }
};

struct UartRx {                 // design -> harness (samples uart_tx)
    int cpb; int state = 0, count = 0, nbits = 0; uint8_t data = 0;
    explicit UartRx(int c) : cpb(c) {}
    bool busy() const { return state != 0; }
    // returns true and sets `out` when a byte completes
    bool tick(int line, uint8_t &out) {
        switch (state) {
        case 0: if (!line) { state = 1; count = cpb / 2; } break;   // start edge
        case 1:
            if (--count == 0) {
                if (line) state = 0;                                  // glitch
                else { state = 2; count = cpb; nbits = 0; data = 0; }
            }
            break;
        case 2:
            if (--count == 0) {
                data |= (uint8_t)(line << nbits);
                count = cpb;
                if (++nbits == 8) state = 3;
            }
            break;
        case 3:
            if (--count == 0) { state = 0; if (line) { out = data; return true; } }
            break;
        }
        return false;
    }
};

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int main(int argc, char **argv) {
    Options opt = parse(argc, argv);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, on_stop); signal(SIGINT, on_stop); signal(SIGHUP, on_stop);
    signal(SIGUSR1, on_reset); signal(SIGPIPE, SIG_IGN);

    int io_fd = -1, listen_fd = -1, keep_slave = -1;
    if (opt.pty) {
        io_fd = posix_openpt(O_RDWR | O_NOCTTY);
        if (io_fd < 0 || grantpt(io_fd) || unlockpt(io_fd)) { perror("posix_openpt"); return 3; }
        const char *name = ptsname(io_fd);
        keep_slave = open(name, O_RDWR | O_NOCTTY);     // keeps the master from seeing EIO
        if (keep_slave < 0) { perror("open slave"); return 3; }
        struct termios t; tcgetattr(keep_slave, &t); cfmakeraw(&t); tcsetattr(keep_slave, TCSANOW, &t);
        tcgetattr(io_fd, &t); cfmakeraw(&t); tcsetattr(io_fd, TCSANOW, &t);
        set_nonblock(io_fd);
        printf("READY pty %s\n", name);
    } else {
        listen_fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1; setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{}; a.sin_family = AF_INET; a.sin_port = htons(opt.tcp_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(listen_fd, (sockaddr *)&a, sizeof a) || listen(listen_fd, 1)) { perror("bind"); return 3; }
        socklen_t al = sizeof a; getsockname(listen_fd, (sockaddr *)&a, &al);
        printf("READY tcp 127.0.0.1:%d\n", ntohs(a.sin_port));
    }
    fflush(stdout);

    Verilated::commandArgs(argc, argv);
    Vtop top;
    Faults in_faults(opt.flip, opt.drop, opt.seed), out_faults(opt.flip, opt.drop, opt.seed ^ 0x9E3779B97F4A7C15ull);
    FrameTracker tracker(opt.max_payload);
    UartTx utx(opt.clks_per_bit);
    UartRx urx(opt.clks_per_bit);
    std::deque<uint8_t> to_board;
    std::vector<uint8_t> to_host;
    uint64_t cycles = 0, bytes_in = 0, bytes_out = 0, quiet = 0, resets = 0;
    const uint64_t QUIET_LIMIT = 2000000;      // cycles without any UART activity before throttling
    bool stall_expired = false;
    int reset_left = 16;

    top.clk = 0; top.rst = 1; top.uart_rx = 1; top.eval();

    while (!g_stop) {
        if (g_reset) {
            g_reset = 0; reset_left = 16; resets++;
            to_board.clear(); tracker.reset(); utx = UartTx(opt.clks_per_bit); urx = UartRx(opt.clks_per_bit);
        }
        // ---- decide how long we may wait for the host
        bool line_busy = utx.busy() || urx.busy() || !to_board.empty() || reset_left > 0;
        int timeout_ms = 0;
        if (io_fd < 0) timeout_ms = 100;                               // no client: nothing to do
        else if (!line_busy && tracker.open() && !stall_expired) timeout_ms = opt.stall_ms;
        else if (!line_busy && quiet > QUIET_LIMIT) timeout_ms = 2;
        struct pollfd p[1];
        int nfd = 0;
        if (io_fd >= 0) { p[0] = {io_fd, (short)(POLLIN | (to_host.empty() ? 0 : POLLOUT)), 0}; nfd = 1; }
        else { p[0] = {listen_fd, POLLIN, 0}; nfd = 1; }
        int r = poll(p, nfd, timeout_ms);
        if (r < 0 && errno != EINTR) { perror("poll"); break; }
        if (io_fd < 0) {
            if (r > 0 && (p[0].revents & POLLIN)) {
                io_fd = accept(listen_fd, nullptr, nullptr);
                if (io_fd >= 0) { set_nonblock(io_fd); int one = 1; setsockopt(io_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
            }
            continue;
        }
        bool got = false;
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            uint8_t buf[65536];
            ssize_t n = read(io_fd, buf, sizeof buf);
            if (n > 0) {
                got = true;
                bytes_in += n;
                for (ssize_t i = 0; i < n; i++) { uint8_t b = buf[i]; if (in_faults.apply(b)) to_board.push_back(b); }
            } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                if (!opt.pty) { close(io_fd); io_fd = -1; to_host.clear(); continue; }  // client left
            }
        }
        if (!got && timeout_ms == opt.stall_ms && r == 0 && tracker.open()) {
            stall_expired = true;        // the host abandoned the frame: let the board time out
            tracker.reset();
        }
        if (got) stall_expired = false;
        // ---- run the clock (unless stalled waiting for the rest of a frame)
        bool stalled = !line_busy && to_board.empty() && tracker.open() && !stall_expired;
        int batch = stalled ? 0 : (line_busy ? 4096 : (quiet > QUIET_LIMIT ? 256 : 4096));
        for (int c = 0; c < batch && !g_stop; c++) {
            if (!utx.busy() && !to_board.empty() && reset_left == 0) {
                uint8_t b = to_board.front(); to_board.pop_front();
                utx.load(b); tracker.push(b);
            }
            top.uart_rx = utx.line();
            top.rst = reset_left > 0;
            top.clk = 1; top.eval();
            top.clk = 0; top.eval();
            cycles++;
            if (reset_left > 0) reset_left--;
            utx.tick();
            uint8_t ob;
            if (urx.tick(top.uart_tx, ob)) { bytes_out++; if (out_faults.apply(ob)) to_host.push_back(ob); }
            if (utx.busy() || urx.busy()) quiet = 0; else quiet++;
            // a stall can start mid-batch once the line drained
            if (!utx.busy() && to_board.empty() && tracker.open() && !stall_expired && !urx.busy()) break;
        }
        // ---- flush to the host
        if (!to_host.empty()) {
            ssize_t n = write(io_fd, to_host.data(), to_host.size());
            if (n > 0) to_host.erase(to_host.begin(), to_host.begin() + n);
        }
    }
    top.final();
    fprintf(stderr, "tervit_board: cycles=%llu bytes_in=%llu bytes_out=%llu flipped=%llu dropped=%llu resets=%llu\n",
            (unsigned long long)cycles, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
            (unsigned long long)(in_faults.flipped + out_faults.flipped),
            (unsigned long long)(in_faults.dropped + out_faults.dropped), (unsigned long long)resets);
    if (io_fd >= 0) close(io_fd);
    if (keep_slave >= 0) close(keep_slave);
    if (listen_fd >= 0) close(listen_fd);
    return 0;
}
