/* The ceiling for results/: a TCP echo that does as little as a WebSocket
 * echo can do, so both load generators (wsecho-load, which verifies every
 * echo, and fastwebsockets' C load_test, which counts echoed bytes) work
 * against it.
 *
 *   tcp_echo PORT        listens on 127.0.0.1:PORT
 *
 * One thread, one epoll instance (level-triggered), non-blocking sockets.
 * Per ready socket: one read() into a receive buffer shared by all
 * connections, then one write() of what it read. The only work between the
 * two is what any WebSocket echo must do: answer the HTTP upgrade with a 101
 * (the Sec-WebSocket-Accept is computed, since wsecho-load checks it), and
 * turn each client frame into a server frame: the header is copied with the
 * mask bit cleared and the 4-byte key dropped, the payload is unmasked (XOR)
 * on its way from the receive buffer to the send buffer. No validation, no
 * control-frame handling (a Close or Ping is echoed back as it came, which is
 * a valid Close reply and a harmless unsolicited Pong-less frame), no UTF-8
 * check, no limits. A connection holds one 64-byte struct while idle; an
 * upgrade request split over reads and a partial write are kept only until
 * they complete.
 *
 * Built by results/run.sh with `cc -O2`. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_SIZE (512 * 1024)
#define MAX_REQUEST 8192

struct conn {
    unsigned char *req;       /* a partial upgrade request, only while incomplete */
    unsigned char *pending;   /* unwritten output; NULL when drained */
    uint64_t remaining;       /* payload bytes left in the current frame */
    uint32_t req_len, pending_len, pending_off;
    uint8_t hdr[14], hdr_have, masked, mask[4], mpos, upgraded;
};

static unsigned char inbuf[RECV_SIZE], outbuf[RECV_SIZE + 64];
static struct conn **conns;
static int nconns_max, ep;

/* SHA-1 (FIPS 180-1), enough for the handshake. */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[64];
    uint64_t bits = (uint64_t)len * 8;
    size_t total = ((len + 8) / 64 + 1) * 64;
    for (size_t off = 0; off < total; off += 64) {
        for (int i = 0; i < 64; i++) {
            size_t p = off + i;
            block[i] = p < len ? msg[p] : p == len ? 0x80 : p >= total - 8 ? (unsigned char)(bits >> (8 * (total - 1 - p))) : 0;
        }
        uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)block[4 * i] << 24 | block[4 * i + 1] << 16 | block[4 * i + 2] << 8 | block[4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, int len, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int o = 0;
    for (int i = 0; i < len; i += 3) {
        uint32_t v = in[i] << 16 | (i + 1 < len ? in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static void drop(int fd) {
    struct conn *c = conns[fd];
    if (c) {
        free(c->req);
        free(c->pending);
        free(c);
        conns[fd] = NULL;
    }
    close(fd);
}

/* Client frames in in[0..n) become server frames appended to out at *w. */
static size_t frames(struct conn *c, const unsigned char *in, size_t n, unsigned char *out) {
    size_t r = 0, w = 0;
    while (r < n) {
        if (c->remaining == 0 && c->hdr_have < 2) {
            c->hdr[c->hdr_have++] = in[r++];
            if (c->hdr_have < 2) continue;
        }
        if (c->remaining == 0) {
            unsigned len7 = c->hdr[1] & 0x7f;
            unsigned need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c->hdr[1] & 0x80 ? 4 : 0);
            while (c->hdr_have < need && r < n) c->hdr[c->hdr_have++] = in[r++];
            if (c->hdr_have < need) break;
            unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
            uint64_t len = len7;
            if (ext) {
                len = 0;
                for (unsigned i = 0; i < ext; i++) len = len << 8 | c->hdr[2 + i];
            }
            c->masked = (c->hdr[1] & 0x80) != 0;
            if (c->masked) memcpy(c->mask, c->hdr + 2 + ext, 4);
            out[w++] = c->hdr[0];
            out[w++] = c->hdr[1] & 0x7f;
            memcpy(out + w, c->hdr + 2, ext);
            w += ext;
            c->remaining = len;
            c->mpos = 0;
            c->hdr_have = 0;
            if (len == 0) continue;
        }
        size_t k = n - r < c->remaining ? n - r : (size_t)c->remaining;
        if (c->masked) {
            /* 8 bytes at a time, as uWebSockets and fastwebsockets do. */
            unsigned char m[8];
            for (int j = 0; j < 8; j++) m[j] = c->mask[(c->mpos + j) & 3];
            uint64_t m8, v;
            memcpy(&m8, m, 8);
            size_t i = 0;
            for (; i + 8 <= k; i += 8) {
                memcpy(&v, in + r + i, 8);
                v ^= m8;
                memcpy(out + w + i, &v, 8);
            }
            for (; i < k; i++) out[w + i] = in[r + i] ^ m[i & 7];
            c->mpos = (unsigned char)((c->mpos + k) & 3);
        } else {
            memcpy(out + w, in + r, k);
        }
        r += k, w += k;
        c->remaining -= k;
    }
    return w;
}

/* Answers a complete upgrade request req[0..len) (NUL-writable at len-1). */
static int respond(int fd, char *req, size_t len) {
    char key[128] = "";
    req[len - 1] = 0; /* the final \n, for the string search */
    for (char *line = req; line; line = strstr(line, "\r\n")) {
        if (*line == '\r') line += 2;
        if (!strncasecmp(line, "Sec-WebSocket-Key:", 18)) {
            char *v = line + 18;
            while (*v == ' ') v++;
            size_t l = strcspn(v, "\r\n ");
            if (l < sizeof key - 40) memcpy(key, v, l), key[l] = 0;
        }
    }
    strcat(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    unsigned char digest[20];
    char accept[32], resp[256];
    sha1((unsigned char *)key, strlen(key), digest);
    base64(digest, 20, accept);
    int rl = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    return write(fd, resp, rl) == rl ? 0 : -1;
}

/* Consumes the upgrade request from in[0..n): the bytes it used, 0 when it
 * is still incomplete (kept in c->req, which exists only then), -1 on error.
 * A request that arrives in one read is never copied. */
static ssize_t upgrade(int fd, struct conn *c, unsigned char *in, size_t n) {
    if (!c->req) {
        unsigned char *end = memmem(in, n, "\r\n\r\n", 4);
        if (end) {
            size_t used = end + 4 - in;
            unsigned char saved = in[used - 1];
            int rc = respond(fd, (char *)in, used);
            in[used - 1] = saved;
            if (rc) return -1;
            c->upgraded = 1;
            return used;
        }
        c->req = malloc(MAX_REQUEST);
        c->req_len = 0;
    }
    size_t take = n < MAX_REQUEST - c->req_len ? n : MAX_REQUEST - c->req_len;
    memcpy(c->req + c->req_len, in, take);
    size_t old = c->req_len;
    c->req_len += take;
    unsigned char *end = memmem(c->req, c->req_len, "\r\n\r\n", 4);
    if (!end) return c->req_len == MAX_REQUEST ? -1 : 0;
    size_t used = (size_t)(end + 4 - c->req);
    if (respond(fd, (char *)c->req, used)) return -1;
    free(c->req);
    c->req = NULL;
    c->upgraded = 1;
    return used - old;
}

static void on_readable(int fd) {
    struct conn *c = conns[fd];
    ssize_t n = read(fd, inbuf, sizeof inbuf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        drop(fd);
        return;
    }
    ssize_t r = 0;
    if (!c->upgraded) {
        r = upgrade(fd, c, inbuf, n);
        if (r < 0) { drop(fd); return; }
        if (!c->upgraded) return;
    }
    size_t w = frames(c, inbuf + r, n - r, outbuf);
    if (!w) return;
    ssize_t sent = write(fd, outbuf, w);
    if (sent < 0) {
        if (errno != EAGAIN) { drop(fd); return; }
        sent = 0;
    }
    if ((size_t)sent < w) {
        /* Stop reading until the rest is out. */
        c->pending = malloc(w - sent);
        memcpy(c->pending, outbuf + sent, w - sent);
        c->pending_len = w - sent, c->pending_off = 0;
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
}

static void on_writable(int fd) {
    struct conn *c = conns[fd];
    ssize_t sent = write(fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
    if (sent < 0) {
        if (errno != EAGAIN) drop(fd);
        return;
    }
    c->pending_off += sent;
    if (c->pending_off == c->pending_len) {
        free(c->pending);
        c->pending = NULL;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tcp_echo PORT   (listens on 127.0.0.1)\n");
        return 2;
    }
    nconns_max = 1 << 20;
    conns = calloc(nconns_max, sizeof *conns);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) {
        perror("tcp_echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= nconns_max) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    conns[cfd] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (conns[fd]) {
                if (evs[i].events & EPOLLOUT) on_writable(fd);
                else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
            }
        }
    }
}
