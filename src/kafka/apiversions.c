/* apiversions.c - one ApiVersions v0 request and its answer, on a plain
 * blocking socket bounded by poll(), to learn whether a cluster answers a
 * request type before luka asks librdkafka to send it. */
#include "kafka/apiversions.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define API_VERSIONS 18

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events, or the deadline.  0, or -1. */
static int wait_fd(int fd, short events, int64_t deadline) {
    struct pollfd p = {.fd = fd, .events = events};
    int left;
    while ((left = (int)(deadline - now_ms())) > 0) {
        int n = poll(&p, 1, left);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return -1;
    }
    errno = ETIMEDOUT;
    return -1;
}

/* Connect to host:port by the deadline.  The socket, or -1. */
static int dial(const char *host, const char *port, int64_t deadline) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, err = 0, gai;
    socklen_t len = sizeof(err);

    if ((gai = getaddrinfo(host, port, &hints, &res))) {
        errno = gai == EAI_SYSTEM ? errno : EHOSTUNREACH;
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0))
            break;
        if (err) errno = err;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const uint8_t *buf, size_t len, int64_t deadline) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) buf += n, len -= (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
        else if (wait_fd(fd, POLLOUT, deadline)) return -1;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *buf, size_t len, int64_t deadline) {
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n > 0) buf += n, len -= (size_t)n;
        else if (n == 0) return errno = ECONNRESET, -1;
        else if (errno != EAGAIN && errno != EINTR) return -1;
        else if (wait_fd(fd, POLLIN, deadline)) return -1;
    }
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int16_t be16(const uint8_t *p) { return (int16_t)((uint16_t)p[0] << 8 | p[1]); }

/* Ask host:port.  1 or 0, or -1 with why. */
static int ask(const char *host, const char *port, int api_key, int timeout_ms, char *why,
               size_t len) {
    /* Size, ApiKey 18, version 0, correlation id 1, client id "luka". */
    static const uint8_t req[] = {0, 0, 0, 14, 0, API_VERSIONS, 0, 0, 0, 0, 0, 1,
                                  0, 4, 'l', 'u', 'k', 'a'};
    uint8_t head[4], body[8192];
    int64_t deadline = now_ms() + timeout_ms;
    uint32_t size, count;
    int fd = dial(host, port, deadline), rc = -1;

    if (fd < 0) {
        snprintf(why, len, "cannot connect to %s:%s: %s", host, port, strerror(errno));
        return -1;
    }
    if (send_all(fd, req, sizeof(req), deadline) || recv_all(fd, head, 4, deadline)) {
        snprintf(why, len, "no ApiVersions answer from %s:%s: %s", host, port, strerror(errno));
        goto done;
    }
    /* Correlation id, error code, count, then 6 bytes per request type. */
    size = be32(head);
    if (size < 10 || size > sizeof(body) || recv_all(fd, body, size, deadline)) {
        snprintf(why, len, "no readable ApiVersions answer from %s:%s", host, port);
        goto done;
    }
    if (be16(body + 4) != 0) {
        snprintf(why, len, "%s:%s answered ApiVersions with error %d", host, port, be16(body + 4));
        goto done;
    }
    count = be32(body + 6);
    if (count > (size - 10) / 6) {
        snprintf(why, len, "a truncated ApiVersions answer from %s:%s", host, port);
        goto done;
    }
    rc = 0;
    for (uint32_t i = 0; i < count; i++)
        if (be16(body + 10 + 6 * i) == api_key) rc = 1;
done:
    close(fd);
    return rc;
}

int kafka_api_supported(const char *brokers, int api_key, int timeout_ms, char *errbuf,
                        size_t errlen) {
    const char *s = brokers;
    snprintf(errbuf, errlen, "no brokers in '%s'", brokers);
    while (*s) {
        char addr[512], *host = addr, *end, *scheme;
        const char *port = "9092";
        size_t n = strcspn(s, ",");
        int rc;
        snprintf(addr, sizeof(addr), "%.*s", (int)n, s);
        s += n + (s[n] == ',');
        while (*host == ' ') host++;
        if ((scheme = strstr(host, "://"))) host = scheme + 3;
        if (!*host) continue;
        /* host:port, [v6]:port, or a host alone on Kafka's port. */
        if (*host == '[' && (end = strchr(host, ']'))) {
            *end = '\0', host++;
            if (end[1] == ':') port = end + 2;
        } else if ((end = strrchr(host, ':'))) {
            *end = '\0';
            port = end + 1;
        }
        rc = ask(host, port, api_key, timeout_ms, errbuf, errlen);
        if (rc >= 0) return rc;
    }
    return -1;
}
