/* broker.c - the embedded Kafka-protocol broker: librdkafka's mock cluster,
 * and the `luka broker` command around it, whose libuv loop adds a
 * fixed-port TCP forwarder (--port) and a control channel on stdin.
 *
 * Facts about the mock cluster of librdkafka 2.0.2 (src/rdkafka_mock.c),
 * read from its source and checked by spec/broker_spec.lua:
 *  - Broker ids run from 1 to N; each broker listens on its own ephemeral
 *    127.0.0.1 port, and Metadata hands those addresses to clients.
 *  - A Metadata request naming an unknown topic creates it with 4 partitions
 *    when the request allows auto-creation (librdkafka producers and kcat -L
 *    do).  CreateTopics is not implemented: topics come from --topic, the
 *    `topic` control command, broker_create_topic() or auto-creation.
 *  - Every partition gets min(3, N) replicas and a random leader among them;
 *    the replication factor passed to rd_kafka_mock_topic_create is ignored.
 *  - Retention: each partition keeps at most 5 MiB or 100,000 message sets
 *    and silently drops the oldest beyond that (the low watermark moves).
 *  - rd_kafka_mock_partition_set_leader creates an unknown topic with
 *    PARTITION + 1 partitions; rd_kafka_mock_coordinator_set accepts any
 *    broker id, so the control commands check ids themselves.
 *  - librdkafka 2.0.2 cannot choose the brokers' ports, hence the forwarder.
 *  - Each rd_kafka_mock_* call is an op handed to the mock thread, which is
 *    woken by a byte on a pipe.  That thread serves its ops before draining
 *    the pipe, so the wake-up byte of an op queued in between is drained
 *    unserved, and the call waits for the thread's 1 s poll timeout (seen
 *    here on some runs, at fixed points of a call sequence).  A kicker
 *    thread wakes the mock thread by connecting to a broker's listener
 *    whenever a call has waited 10 ms; one kick ends such a stall.
 *  - rd_kafka_mock_cluster_destroy sometimes takes 1 s, waiting for its
 *    internal broker thread, which can miss its terminate op (seen in
 *    about one destroy in twenty); no kick reaches that thread.
 */
#include "broker.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "log.h"

#define MAX_BROKERS 64
#define MAX_PARTITIONS 100000
#define MAX_FAIL_COUNT 100000
#define DEFAULT_PARTITIONS 4

/* Wakes the mock thread when a call into it stalls (see the note above). */
typedef struct kicker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    int running;     /* cleared to make the thread exit */
    int inflight;    /* a mock call is waiting for the mock thread */
    uint64_t call;   /* counts calls, so that a new call restarts the wait */
    int nports;
    uint16_t ports[MAX_BROKERS]; /* the brokers' listeners on 127.0.0.1 */
} kicker_t;

#define KICK_AFTER_MS 10

struct broker {
    rd_kafka_t *rk; /* hosts the mock cluster; never connects anywhere */
    rd_kafka_mock_cluster_t *mcluster;
    int nbrokers;
    kicker_t kicker;
};

/* A connection to a listener makes the mock thread's poll return, and it
 * serves its ops queue on every return.  A broker that is down refuses. */
static void kick(const kicker_t *k) {
    for (int i = 0; i < k->nports; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons(k->ports[i]),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return;
        int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (r == 0) return;
    }
}

static void *kicker_main(void *arg) {
    kicker_t *k = arg;

    pthread_mutex_lock(&k->lock);
    while (k->running) {
        uint64_t call = k->call;
        struct timespec until;

        if (!k->inflight) {
            pthread_cond_wait(&k->cond, &k->lock);
            continue;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += KICK_AFTER_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (k->running && k->inflight && k->call == call &&
               pthread_cond_timedwait(&k->cond, &k->lock, &until) == 0)
            ;
        if (k->running && k->inflight && k->call == call) {
            pthread_mutex_unlock(&k->lock);
            kick(k);
            pthread_mutex_lock(&k->lock);
        }
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Starts the kicker on the ports of the bootstrap list. */
static int kicker_start(kicker_t *k, const char *bootstraps) {
    sigset_t all, old;
    const char *p = bootstraps;
    int r;

    while (p && *p && k->nports < MAX_BROKERS) {
        const char *colon = strchr(p, ':');
        if (!colon) break;
        k->ports[k->nports++] = (uint16_t)atoi(colon + 1);
        p = strchr(colon, ',');
        if (p) p++;
    }
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    k->running = 1;
    /* Signals are for the application's threads, as librdkafka's own
     * threads also arrange. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&k->thread, NULL, kicker_main, k);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        return -1;
    }
    k->started = 1;
    return 0;
}

static void kicker_stop(kicker_t *k) {
    if (!k->started) return;
    pthread_mutex_lock(&k->lock);
    k->running = 0;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    k->started = 0;
}

/* Brackets every call into the mock cluster. */
static void mock_call_begin(broker_t *b) {
    kicker_t *k = &b->kicker;
    pthread_mutex_lock(&k->lock);
    k->inflight = 1;
    k->call++;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

static void mock_call_end(broker_t *b) {
    kicker_t *k = &b->kicker;
    pthread_mutex_lock(&k->lock);
    k->inflight = 0;
    pthread_mutex_unlock(&k->lock);
}

static int errorf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int errorf(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Runs on librdkafka's threads: it may only format and write one line. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
    int lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN
              : level <= 6                        ? LOG_INFO
                                                  : LOG_DEBUG;
    (void)rk;
    /* The hosting handle has no brokers on purpose; its warning about
     * that would only mislead. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers")) return;
    log_at(lvl, "rdkafka", NULL, "%s: %s", fac, buf);
}

broker_t *broker_start(int nbrokers, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = NULL;
    broker_t *b = NULL;
    char errstr[512];

    if (nbrokers < 1 || nbrokers > MAX_BROKERS) {
        errorf(errbuf, errlen, "broker count %d is not in 1..%d", nbrokers,
               MAX_BROKERS);
        goto fail;
    }
    if (!(b = calloc(1, sizeof(*b)))) {
        errorf(errbuf, errlen, "out of memory");
        goto fail;
    }
    b->nbrokers = nbrokers;
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (rd_kafka_conf_set(conf, "client.id", "luka-broker", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        (log_level >= LOG_DEBUG &&
         rd_kafka_conf_set(conf, "debug", "mock", errstr, sizeof(errstr)) !=
             RD_KAFKA_CONF_OK)) {
        errorf(errbuf, errlen, "configuring the host client: %s", errstr);
        goto fail;
    }
    /* A producer is the cheapest handle; it only hosts the cluster. */
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!b->rk) {
        errorf(errbuf, errlen, "creating the host client: %s", errstr);
        goto fail;
    }
    conf = NULL; /* now owned by b->rk */
    b->mcluster = rd_kafka_mock_cluster_new(b->rk, nbrokers);
    if (!b->mcluster) {
        errorf(errbuf, errlen, "creating the mock cluster failed (see log)");
        goto fail;
    }
    if (kicker_start(&b->kicker, broker_bootstraps(b)) != 0) {
        errorf(errbuf, errlen, "cannot start a thread");
        goto fail;
    }
    log_info("broker", "mock cluster of %d broker(s) at %s", nbrokers,
             broker_bootstraps(b));
    return b;

fail:
    if (conf) rd_kafka_conf_destroy(conf);
    broker_stop(b);
    return NULL;
}

const char *broker_bootstraps(const broker_t *b) {
    return rd_kafka_mock_cluster_bootstraps(b->mcluster);
}

/* Kafka's own rule: 1..249 characters of [A-Za-z0-9._-]. */
static int check_topic_name(const char *name, char *errbuf, size_t errlen) {
    size_t n = strlen(name);
    if (n == 0 || n > 249)
        return errorf(errbuf, errlen, "topic name must have 1..249 characters");
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return errorf(errbuf, errlen,
                          "topic name '%s' may only use A-Z a-z 0-9 . _ -",
                          name);
    }
    return 0;
}

int broker_create_topic(broker_t *b, const char *topic, int partitions,
                        char *errbuf, size_t errlen) {
    rd_kafka_resp_err_t err;

    if (check_topic_name(topic, errbuf, errlen) != 0) return -1;
    if (partitions < 1 || partitions > MAX_PARTITIONS)
        return errorf(errbuf, errlen, "partition count %d is not in 1..%d",
                      partitions, MAX_PARTITIONS);
    mock_call_begin(b);
    err = rd_kafka_mock_topic_create(b->mcluster, topic, partitions, 1);
    mock_call_end(b);
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) return 0;
    if (err)
        return errorf(errbuf, errlen, "creating topic %s: %s", topic,
                      rd_kafka_err2str(err));
    log_info("broker", "created topic %s with %d partition(s)", topic,
             partitions);
    return 0;
}

void broker_stop(broker_t *b) {
    if (!b) return;
    /* Not bracketed for the kicker: the listeners close during the call,
     * and their ports may go to another process. */
    if (b->mcluster) rd_kafka_mock_cluster_destroy(b->mcluster);
    kicker_stop(&b->kicker);
    if (b->rk) rd_kafka_destroy(b->rk);
    free(b);
}

/* ---- Control commands ------------------------------------------------ */

/* Kafka protocol ApiKeys.  librdkafka keeps its RD_KAFKAP_* constants in
 * private headers, so the names the control channel accepts live here. */
static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"DescribeConfigs", 32},
    {"AlterConfigs", 33},
    {"SaslAuthenticate", 36},
    {"CreatePartitions", 37},
    {"DeleteGroups", 42},
};

/* A whole-string decimal integer in [min, max]. */
static int parse_long(const char *s, long min, long max, long *out) {
    char *end;
    long v;

    if (!s || !*s) return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *key, char *errbuf,
                     size_t errlen) {
    long v;

    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *key = api_keys[i].key;
            return 0;
        }
    }
    if (parse_long(s, 0, INT16_MAX, &v) == 0) {
        *key = (int16_t)v;
        return 0;
    }
    return errorf(errbuf, errlen,
                  "unknown API '%s' (a name like Produce or Fetch, or an "
                  "ApiKey number)",
                  s);
}

/* An error by number, or by librdkafka's name for it, with or without the
 * RD_KAFKA_RESP_ERR_ prefix and the leading '_' of client-side errors
 * (TRANSPORT is _TRANSPORT).  No two names differ only by that '_'. */
static int parse_error(const char *s, rd_kafka_resp_err_t *err, char *errbuf,
                       size_t errlen) {
    const struct rd_kafka_err_desc *descs;
    size_t ndescs;
    long v;
    const char *name = s;

    if (parse_long(s, INT_MIN, INT_MAX, &v) == 0) {
        *err = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(name, "RD_KAFKA_RESP_ERR_", 18) == 0) name += 18;
    rd_kafka_get_err_descs(&descs, &ndescs);
    for (size_t i = 0; i < ndescs; i++) {
        const char *n = descs[i].name;
        if (!n) continue;
        if (strcasecmp(n, name) == 0 ||
            (n[0] == '_' && name[0] != '_' && strcasecmp(n + 1, name) == 0)) {
            *err = descs[i].code;
            return 0;
        }
    }
    return errorf(errbuf, errlen,
                  "unknown error '%s' (a name like NOT_COORDINATOR or "
                  "TRANSPORT, or a number)",
                  s);
}

/* A broker id in 1..nbrokers, or -1 for "all" when allowed. */
static int parse_broker_id(const broker_t *b, const char *s, int allow_all,
                           int32_t *id, char *errbuf, size_t errlen) {
    long v;

    if (allow_all && strcasecmp(s, "all") == 0) {
        *id = -1;
        return 0;
    }
    if (parse_long(s, 1, b->nbrokers, &v) != 0)
        return errorf(errbuf, errlen, "no broker '%s' (ids are 1..%d%s)", s,
                      b->nbrokers, allow_all ? " or all" : "");
    *id = (int32_t)v;
    return 0;
}

static int mock_result(rd_kafka_resp_err_t err, char *errbuf, size_t errlen) {
    if (err) return errorf(errbuf, errlen, "%s", rd_kafka_err2str(err));
    return 0;
}

static int cmd_updown(broker_t *b, char **argv, int argc, char *errbuf,
                      size_t errlen) {
    int32_t id = 0;
    int up = strcmp(argv[0], "up") == 0;

    if (argc != 2)
        return errorf(errbuf, errlen, "usage: %s BROKER_ID|all", argv[0]);
    if (parse_broker_id(b, argv[1], 1, &id, errbuf, errlen) != 0) return -1;
    return mock_result(up ? rd_kafka_mock_broker_set_up(b->mcluster, id)
                          : rd_kafka_mock_broker_set_down(b->mcluster, id),
                       errbuf, errlen);
}

static int cmd_rtt(broker_t *b, char **argv, int argc, char *errbuf,
                   size_t errlen) {
    int32_t id = 0;
    long ms = 0;

    if (argc != 3) return errorf(errbuf, errlen, "usage: rtt BROKER_ID|all MS");
    if (parse_broker_id(b, argv[1], 1, &id, errbuf, errlen) != 0) return -1;
    if (parse_long(argv[2], 0, 3600000, &ms) != 0)
        return errorf(errbuf, errlen, "MS '%s' is not in 0..3600000", argv[2]);
    return mock_result(rd_kafka_mock_broker_set_rtt(b->mcluster, id, (int)ms),
                       errbuf, errlen);
}

static int cmd_fail(broker_t *b, char **argv, int argc, char *errbuf,
                    size_t errlen) {
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR, *errs;
    int16_t key = 0;
    long count = 0;

    if (argc != 4)
        return errorf(errbuf, errlen, "usage: fail API COUNT ERROR");
    if (parse_api(argv[1], &key, errbuf, errlen) != 0) return -1;
    if (parse_long(argv[2], 1, MAX_FAIL_COUNT, &count) != 0)
        return errorf(errbuf, errlen, "COUNT '%s' is not in 1..%d", argv[2],
                      MAX_FAIL_COUNT);
    if (parse_error(argv[3], &err, errbuf, errlen) != 0) return -1;
    if (!(errs = malloc(sizeof(*errs) * (size_t)count)))
        return errorf(errbuf, errlen, "out of memory");
    for (long i = 0; i < count; i++) errs[i] = err;
    rd_kafka_mock_push_request_errors_array(b->mcluster, key, (size_t)count,
                                            errs);
    free(errs);
    return 0;
}

static int cmd_leader(broker_t *b, char **argv, int argc, char *errbuf,
                      size_t errlen) {
    int32_t id = 0;
    long partition = 0;

    if (argc != 4)
        return errorf(errbuf, errlen, "usage: leader TOPIC PARTITION BROKER_ID");
    if (check_topic_name(argv[1], errbuf, errlen) != 0) return -1;
    if (parse_long(argv[2], 0, MAX_PARTITIONS - 1, &partition) != 0)
        return errorf(errbuf, errlen, "PARTITION '%s' is not a partition",
                      argv[2]);
    if (parse_broker_id(b, argv[3], 0, &id, errbuf, errlen) != 0) return -1;
    return mock_result(rd_kafka_mock_partition_set_leader(
                           b->mcluster, argv[1], (int32_t)partition, id),
                       errbuf, errlen);
}

static int cmd_coordinator(broker_t *b, char **argv, int argc, char *errbuf,
                           size_t errlen) {
    int32_t id = 0;

    if (argc != 4 ||
        (strcmp(argv[1], "group") != 0 && strcmp(argv[1], "transaction") != 0))
        return errorf(errbuf, errlen,
                      "usage: coordinator group|transaction KEY BROKER_ID");
    if (parse_broker_id(b, argv[3], 0, &id, errbuf, errlen) != 0) return -1;
    return mock_result(
        rd_kafka_mock_coordinator_set(b->mcluster, argv[1], argv[2], id),
        errbuf, errlen);
}

static int cmd_topic(broker_t *b, char **argv, int argc, char *errbuf,
                     size_t errlen) {
    long partitions = 0;

    if (argc != 3) return errorf(errbuf, errlen, "usage: topic NAME PARTITIONS");
    if (parse_long(argv[2], 1, MAX_PARTITIONS, &partitions) != 0)
        return errorf(errbuf, errlen, "PARTITIONS '%s' is not in 1..%d",
                      argv[2], MAX_PARTITIONS);
    return broker_create_topic(b, argv[1], (int)partitions, errbuf, errlen);
}

/* The commands, their usage and their help: this table drives dispatch,
 * usage errors and `luka broker --help`. */
static const struct {
    const char *name;
    int (*run)(broker_t *b, char **argv, int argc, char *errbuf,
               size_t errlen);
    const char *usage;
    const char *help;
} commands[] = {
    {"down", cmd_updown, "down BROKER_ID|all",
     "disconnect the broker's clients and refuse new connections"},
    {"up", cmd_updown, "up BROKER_ID|all", "accept connections again"},
    {"rtt", cmd_rtt, "rtt BROKER_ID|all MS",
     "delay every response by MS milliseconds (0 removes the delay)"},
    {"fail", cmd_fail, "fail API COUNT ERROR",
     "fail the next COUNT requests of API (Produce, Fetch, OffsetCommit,\n"
     "JoinGroup, ... or an ApiKey number) with ERROR (NOT_COORDINATOR,\n"
     "REBALANCE_IN_PROGRESS, ... or a number; TRANSPORT disconnects)"},
    {"leader", cmd_leader, "leader TOPIC PARTITION BROKER_ID",
     "move the partition's leader (an unknown topic is created with\n"
     "PARTITION+1 partitions)"},
    {"coordinator", cmd_coordinator,
     "coordinator group|transaction KEY BROKER_ID",
     "move the coordinator of a group id or transactional id"},
    {"topic", cmd_topic, "topic NAME PARTITIONS",
     "create a topic; nothing happens if it exists"},
};

#define MAX_ARGS 8

/* Names the commands, from the table. */
static int unknown_command(const char *name, char *errbuf, size_t errlen) {
    size_t n = (size_t)snprintf(errbuf, errlen, "unknown command '%s' (one of",
                                name);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && n < errlen;
         i++)
        n += (size_t)snprintf(errbuf + n, errlen - n, " %s", commands[i].name);
    if (n < errlen) snprintf(errbuf + n, errlen - n, ")");
    return -1;
}

int broker_control(broker_t *b, const char *line, char *errbuf,
                   size_t errlen) {
    char buf[1024], *argv[MAX_ARGS], *save = NULL, *tok;
    int argc = 0;

    if (strlen(line) >= sizeof(buf))
        return errorf(errbuf, errlen, "command longer than %zu bytes",
                      sizeof(buf) - 1);
    strcpy(buf, line);
    for (tok = strtok_r(buf, " \t\r\n", &save); tok;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == MAX_ARGS)
            return errorf(errbuf, errlen, "too many words in '%s'", line);
        argv[argc++] = tok;
    }
    if (argc == 0) return errorf(errbuf, errlen, "empty command");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            int r;
            mock_call_begin(b);
            r = commands[i].run(b, argv, argc, errbuf, errlen);
            mock_call_end(b);
            if (r != 0) return -1;
            log_info("broker", "control: %s", line);
            return 0;
        }
    }
    return unknown_command(argv[0], errbuf, errlen);
}

/* Prints each command's usage and help, help lines indented. */
static void print_commands(FILE *out) {
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *h = commands[i].help;
        fprintf(out, "  %s\n", commands[i].usage);
        while (*h) {
            size_t n = strcspn(h, "\n");
            fprintf(out, "      %.*s\n", (int)n, h);
            h += n + (h[n] == '\n');
        }
    }
    fprintf(out, "  help\n      list these commands\n");
}

/* ---- The `luka broker` command --------------------------------------- */

/* Command-line options, declared once: they drive parsing, errors and
 * --help. */
enum { OPT_BROKERS, OPT_PORT, OPT_TOPIC, OPT_CONTROL, OPT_HELP };

static const struct {
    const char *name;
    const char *arg; /* NULL for a flag */
    const char *help;
} options[] = {
    [OPT_BROKERS] = {"--brokers", "N", "number of brokers, ids 1..N (default 1)"},
    [OPT_PORT] = {"--port", "P",
                  "also serve clients on 127.0.0.1:P (0: a free port),\n"
                  "forwarded to broker 1 and listed first in the bootstrap"},
    [OPT_TOPIC] = {"--topic", "NAME[:PARTITIONS]",
                   "create a topic (default 4 partitions); repeatable"},
    [OPT_CONTROL] = {"--control", NULL,
                     "read control commands from stdin, one per line"},
    [OPT_HELP] = {"--help", NULL, "print this help"},
};

#define NOPTIONS ((int)(sizeof(options) / sizeof(options[0])))

static void usage(FILE *out) {
    fprintf(out,
            "usage: luka broker [--brokers N] [--port P] "
            "[--topic NAME[:PARTITIONS]]... [--control]\n"
            "\n"
            "Run a Kafka-protocol broker (librdkafka's mock cluster) on "
            "loopback until\n"
            "SIGINT or SIGTERM.  The first line on stdout is "
            "\"bootstrap: ADDR[,ADDR]...\".\n"
            "Unknown topics are created with 4 partitions on first use; "
            "each partition\n"
            "keeps at most 5 MiB or 100000 message sets, dropping the "
            "oldest.\n"
            "\n"
            "options (and luka's --log-level LEVEL):\n");
    for (int i = 0; i < NOPTIONS; i++) {
        char head[64];
        const char *h = options[i].help;
        snprintf(head, sizeof(head), "%s%s%s", options[i].name,
                 options[i].arg ? " " : "",
                 options[i].arg ? options[i].arg : "");
        while (*h) {
            size_t n = strcspn(h, "\n");
            fprintf(out, "  %-28s %.*s\n", head, (int)n, h);
            head[0] = '\0';
            h += n + (h[n] == '\n');
        }
    }
    fprintf(out,
            "\n"
            "control commands (--control), each answered on stdout by \"ok\" "
            "or\n"
            "\"error: REASON\"; end of input leaves the broker running:\n");
    print_commands(out);
}

typedef struct topic_spec {
    char name[250]; /* Kafka allows 249 characters */
    int partitions;
} topic_spec_t;

typedef struct cli_args {
    int nbrokers;
    int port; /* -1: no forwarder */
    int control;
    int help;
    topic_spec_t *topics;
    int ntopics;
} cli_args_t;

static int bad_option(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_option(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "luka broker: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; run 'luka broker --help'\n");
    return -1;
}

/* NAME[:PARTITIONS] */
static int parse_topic_spec(const char *spec, topic_spec_t *t) {
    char errbuf[300];
    const char *colon = strchr(spec, ':');
    size_t namelen = colon ? (size_t)(colon - spec) : strlen(spec);
    long partitions = DEFAULT_PARTITIONS;

    if (namelen >= sizeof(t->name))
        return bad_option("--topic: topic name must have 1..249 characters");
    memcpy(t->name, spec, namelen);
    t->name[namelen] = '\0';
    if (colon && parse_long(colon + 1, 1, MAX_PARTITIONS, &partitions) != 0)
        return bad_option("--topic %s: partition count '%s' is not in 1..%d",
                          t->name, colon + 1, MAX_PARTITIONS);
    if (check_topic_name(t->name, errbuf, sizeof(errbuf)) != 0)
        return bad_option("--topic: %s", errbuf);
    t->partitions = (int)partitions;
    return 0;
}

static int parse_args(int argc, char **argv, cli_args_t *a) {
    a->nbrokers = 1;
    a->port = -1;
    if (!(a->topics = calloc((size_t)argc + 1, sizeof(*a->topics)))) {
        fprintf(stderr, "luka broker: out of memory\n");
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *value = NULL, *eq;
        size_t namelen;
        int opt = -1;
        long v;

        if (strncmp(arg, "--", 2) != 0)
            return bad_option("unexpected argument '%s'", arg);
        eq = strchr(arg, '=');
        namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (int j = 0; j < NOPTIONS; j++)
            if (strlen(options[j].name) == namelen &&
                strncmp(arg, options[j].name, namelen) == 0)
                opt = j;
        if (opt < 0) return bad_option("unknown option '%.*s'", (int)namelen, arg);
        if (options[opt].arg) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return bad_option("option %s needs a value (%s)",
                                  options[opt].name, options[opt].arg);
        } else if (eq) {
            return bad_option("option %s takes no value", options[opt].name);
        }
        switch (opt) {
        case OPT_BROKERS:
            if (parse_long(value, 1, MAX_BROKERS, &v) != 0)
                return bad_option("--brokers: '%s' is not in 1..%d", value,
                                  MAX_BROKERS);
            a->nbrokers = (int)v;
            break;
        case OPT_PORT:
            if (parse_long(value, 0, 65535, &v) != 0)
                return bad_option("--port: '%s' is not a port (0..65535)",
                                  value);
            a->port = (int)v;
            break;
        case OPT_TOPIC:
            if (parse_topic_spec(value, &a->topics[a->ntopics]) != 0) return -1;
            a->ntopics++;
            break;
        case OPT_CONTROL:
            a->control = 1;
            break;
        case OPT_HELP:
            a->help = 1;
            break;
        }
    }
    return 0;
}

/* The forwarder: each client connection accepted on --port gets its own
 * connection to broker 1, and bytes are piped both ways.  A side that ends
 * its stream gets its peer's write side shut down after pending writes; an
 * error on either side closes both. */

/* Stop reading a side while this many bytes wait to be written to its
 * peer, and resume below it. */
#define FWD_HIGH_WATER (4 * 1024 * 1024)

typedef struct broker_cli broker_cli_t;

typedef struct fwd_side {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown;
    int reading;
    int eof;      /* this side ended its stream */
    int shut;     /* the peer's write side was shut down after that eof */
} fwd_side_t;

typedef struct fwd_conn {
    broker_cli_t *cli;
    fwd_side_t side[2]; /* [0] the client, [1] broker 1 */
    uv_connect_t connect;
    int open_handles; /* memory is released in the close callback at 0 */
    int closing;
    struct fwd_conn *prev, *next;
} fwd_conn_t;

typedef struct fwd_write {
    uv_write_t req;
    char *base;
} fwd_write_t;

struct broker_cli {
    uv_loop_t loop;
    broker_t *broker;
    uv_signal_t sigint, sigterm;
    uv_tcp_t listener;
    int listening;
    struct sockaddr_storage upstream;
    fwd_conn_t *conns;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } in;
    int in_open;
    char line[1024];
    size_t linelen;
    int overlong; /* the current line is being discarded */
    int stopping;
};

static void conn_closed_cb(uv_handle_t *h) {
    fwd_conn_t *c = h->data;
    if (--c->open_handles == 0) free(c);
}

static void conn_close(fwd_conn_t *c) {
    if (c->closing) return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->cli->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&c->side[i].tcp, conn_closed_cb);
}

static int side_of(const fwd_conn_t *c, const uv_stream_t *s) {
    return s == (const uv_stream_t *)&c->side[0].tcp ? 0 : 1;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void fwd_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void side_read_start(fwd_conn_t *c, int i) {
    int r;
    if (c->side[i].reading || c->side[i].eof || c->closing) return;
    if ((r = uv_read_start((uv_stream_t *)&c->side[i].tcp, alloc_cb,
                           fwd_read_cb)) != 0) {
        log_warn("broker", "forwarder: read: %s", uv_strerror(r));
        conn_close(c);
        return;
    }
    c->side[i].reading = 1;
}

static void side_read_stop(fwd_conn_t *c, int i) {
    if (!c->side[i].reading) return;
    uv_read_stop((uv_stream_t *)&c->side[i].tcp);
    c->side[i].reading = 0;
}

static void fwd_write_cb(uv_write_t *req, int status) {
    fwd_write_t *w = (fwd_write_t *)req;
    uv_stream_t *to = req->handle;
    fwd_conn_t *c = to->data;
    int from = 1 - side_of(c, to);

    free(w->base);
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (to->write_queue_size < FWD_HIGH_WATER / 2)
        side_read_start(c, from);
}

static void fwd_shutdown_cb(uv_shutdown_t *req, int status) {
    fwd_conn_t *c = req->handle->data;
    int from = 1 - side_of(c, req->handle);

    if (status < 0) {
        conn_close(c);
        return;
    }
    c->side[from].shut = 1;
    if (c->side[0].shut && c->side[1].shut) conn_close(c);
}

static void fwd_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    fwd_conn_t *c = s->data;
    int from = side_of(c, s), to = 1 - from;
    uv_stream_t *peer = (uv_stream_t *)&c->side[to].tcp;

    if (nread > 0) {
        fwd_write_t *w = malloc(sizeof(*w));
        uv_buf_t out = uv_buf_init(buf->base, (unsigned int)nread);
        if (!w) {
            free(buf->base);
            conn_close(c);
            return;
        }
        w->base = buf->base;
        if (uv_write(&w->req, peer, &out, 1, fwd_write_cb) != 0) {
            free(w->base);
            free(w);
            conn_close(c);
            return;
        }
        if (peer->write_queue_size > FWD_HIGH_WATER) side_read_stop(c, from);
        return;
    }
    free(buf->base);
    if (nread == 0) return;
    if (nread == UV_EOF) {
        side_read_stop(c, from);
        c->side[from].eof = 1;
        if (uv_shutdown(&c->side[to].shutdown, peer, fwd_shutdown_cb) != 0)
            conn_close(c);
        return;
    }
    conn_close(c);
}

static void fwd_connect_cb(uv_connect_t *req, int status) {
    fwd_conn_t *c = req->data;

    if (status < 0) {
        if (!c->closing) {
            log_info("broker", "forwarder: broker 1 refused a connection: %s",
                     uv_strerror(status));
            conn_close(c);
        }
        return;
    }
    side_read_start(c, 0);
    side_read_start(c, 1);
}

static void fwd_accept_cb(uv_stream_t *server, int status) {
    broker_cli_t *cli = server->data;
    fwd_conn_t *c;
    int r;

    if (status < 0) {
        log_warn("broker", "forwarder: accept: %s", uv_strerror(status));
        return;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        log_error("broker", "forwarder: out of memory");
        return;
    }
    c->cli = cli;
    for (int i = 0; i < 2; i++) {
        uv_tcp_init(&cli->loop, &c->side[i].tcp);
        c->side[i].tcp.data = c;
        c->open_handles++;
    }
    c->next = cli->conns;
    if (cli->conns) cli->conns->prev = c;
    cli->conns = c;
    if ((r = uv_accept(server, (uv_stream_t *)&c->side[0].tcp)) != 0) {
        log_warn("broker", "forwarder: accept: %s", uv_strerror(r));
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->side[0].tcp, 1);
    uv_tcp_nodelay(&c->side[1].tcp, 1);
    c->connect.data = c;
    if ((r = uv_tcp_connect(&c->connect, &c->side[1].tcp,
                            (const struct sockaddr *)&cli->upstream,
                            fwd_connect_cb)) != 0) {
        log_warn("broker", "forwarder: connect: %s", uv_strerror(r));
        conn_close(c);
    }
}

/* Listens on 127.0.0.1:port and puts the bound port in *bound. */
static int forwarder_start(broker_cli_t *cli, int port, int *bound) {
    char first[64];
    const char *bs = broker_bootstraps(cli->broker);
    size_t n = strcspn(bs, ",");
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = sizeof(name), r;
    char *colon;

    /* The first mock broker's address, "127.0.0.1:PORT". */
    if (n >= sizeof(first)) n = sizeof(first) - 1;
    memcpy(first, bs, n);
    first[n] = '\0';
    if (!(colon = strrchr(first, ':'))) {
        log_error("broker", "forwarder: cannot parse broker address '%s'", first);
        return -1;
    }
    *colon = '\0';
    if (uv_ip4_addr(first, atoi(colon + 1), (struct sockaddr_in *)&cli->upstream) != 0 &&
        uv_ip6_addr(first, atoi(colon + 1), (struct sockaddr_in6 *)&cli->upstream) != 0) {
        log_error("broker", "forwarder: cannot parse broker address '%s'", first);
        return -1;
    }

    uv_tcp_init(&cli->loop, &cli->listener);
    cli->listener.data = cli;
    cli->listening = 1;
    uv_ip4_addr("127.0.0.1", port, &addr);
    if ((r = uv_tcp_bind(&cli->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&cli->listener, 128, fwd_accept_cb)) != 0) {
        log_error("broker", "cannot listen on 127.0.0.1:%d: %s", port,
                  uv_strerror(r));
        return -1;
    }
    if ((r = uv_tcp_getsockname(&cli->listener, (struct sockaddr *)&name,
                                &namelen)) != 0) {
        log_error("broker", "forwarder: getsockname: %s", uv_strerror(r));
        return -1;
    }
    *bound = ntohs(((struct sockaddr_in *)&name)->sin_port);
    log_info("broker", "forwarding 127.0.0.1:%d to broker 1 at %s:%s", *bound,
             first, colon + 1);
    return 0;
}

/* Runs one control line and answers it on stdout. */
static void control_line(broker_cli_t *cli, char *line) {
    char errbuf[512];
    size_t n = strspn(line, " \t\r");

    line += n;
    n = strlen(line);
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0) return;
    if (strcmp(line, "help") == 0) {
        print_commands(stdout);
        printf("ok\n");
    } else if (broker_control(cli->broker, line, errbuf, sizeof(errbuf)) == 0) {
        printf("ok\n");
    } else {
        log_info("broker", "control: %s: %s", line, errbuf);
        printf("error: %s\n", errbuf);
    }
    fflush(stdout);
}

/* Splits what arrives on stdin into lines; an overlong line is answered
 * once with an error and otherwise skipped. */
static void control_feed(broker_cli_t *cli, const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (cli->overlong) {
                printf("error: command longer than %zu bytes\n",
                       sizeof(cli->line) - 1);
                fflush(stdout);
            } else {
                cli->line[cli->linelen] = '\0';
                control_line(cli, cli->line);
            }
            cli->linelen = 0;
            cli->overlong = 0;
        } else if (cli->linelen + 1 < sizeof(cli->line)) {
            cli->line[cli->linelen++] = data[i];
        } else {
            cli->overlong = 1;
        }
    }
}

static void stdin_close(broker_cli_t *cli) {
    if (!cli->in_open) return;
    cli->in_open = 0;
    uv_close((uv_handle_t *)&cli->in, NULL);
}

static void stdin_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    broker_cli_t *cli = s->data;

    if (nread > 0) control_feed(cli, buf->base, (size_t)nread);
    free(buf->base);
    if (nread >= 0) return;
    if (nread == UV_EOF) {
        /* A last line without its newline still counts. */
        if (cli->linelen > 0) control_feed(cli, "\n", 1);
        log_info("broker", "control: end of input; running until a signal");
    } else {
        log_warn("broker", "control: reading stdin: %s", uv_strerror((int)nread));
    }
    stdin_close(cli);
}

static int control_start(broker_cli_t *cli) {
    uv_handle_type type = uv_guess_handle(0);
    int r;

    if (type == UV_FILE) {
        /* A regular file never blocks: read it now, before the loop runs. */
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) control_feed(cli, buf, n);
        if (cli->linelen > 0) control_feed(cli, "\n", 1);
        log_info("broker", "control: end of input; running until a signal");
        return 0;
    }
    if (type == UV_TTY) {
        r = uv_tty_init(&cli->loop, &cli->in.tty, 0, 1);
    } else if (type == UV_NAMED_PIPE || type == UV_TCP) {
        r = uv_pipe_init(&cli->loop, &cli->in.pipe, 0);
        if (r == 0) {
            cli->in_open = 1;
            r = uv_pipe_open(&cli->in.pipe, 0);
        }
    } else {
        r = UV_EINVAL;
    }
    if (r != 0) {
        log_error("broker", "control: stdin is not a terminal, pipe or file: %s",
                  uv_strerror(r));
        stdin_close(cli);
        return -1;
    }
    cli->in_open = 1;
    ((uv_handle_t *)&cli->in)->data = cli;
    if ((r = uv_read_start((uv_stream_t *)&cli->in, alloc_cb, stdin_read_cb)) != 0) {
        log_error("broker", "control: reading stdin: %s", uv_strerror(r));
        return -1;
    }
    return 0;
}

/* Closes every handle so that uv_run returns. */
static void cli_stop(broker_cli_t *cli) {
    if (cli->stopping) return;
    cli->stopping = 1;
    if (cli->listening) {
        cli->listening = 0;
        uv_close((uv_handle_t *)&cli->listener, NULL);
    }
    while (cli->conns) conn_close(cli->conns);
    stdin_close(cli);
    uv_close((uv_handle_t *)&cli->sigint, NULL);
    uv_close((uv_handle_t *)&cli->sigterm, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
    broker_cli_t *cli = h->data;
    log_info("broker", "stopping on %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    cli_stop(cli);
}

int broker_main(int argc, char **argv) {
    cli_args_t args = {0};
    broker_cli_t *cli = NULL;
    char errbuf[512];
    int rc = 1, loop_open = 0, port = -1;

    if (parse_args(argc, argv, &args) != 0) {
        rc = 2;
        goto done;
    }
    if (args.help) {
        usage(stdout);
        rc = 0;
        goto done;
    }
    /* Control replies go to a reader that may have gone away. */
    signal(SIGPIPE, SIG_IGN);

    if (!(cli = calloc(1, sizeof(*cli)))) {
        log_error("broker", "out of memory");
        goto done;
    }
    if (!(cli->broker = broker_start(args.nbrokers, errbuf, sizeof(errbuf)))) {
        log_error("broker", "%s", errbuf);
        goto done;
    }
    for (int i = 0; i < args.ntopics; i++) {
        if (broker_create_topic(cli->broker, args.topics[i].name,
                                args.topics[i].partitions, errbuf,
                                sizeof(errbuf)) != 0) {
            log_error("broker", "%s", errbuf);
            goto done;
        }
    }
    if (uv_loop_init(&cli->loop) != 0) {
        log_error("broker", "cannot create the event loop");
        goto done;
    }
    loop_open = 1;
    uv_signal_init(&cli->loop, &cli->sigint);
    uv_signal_init(&cli->loop, &cli->sigterm);
    cli->sigint.data = cli->sigterm.data = cli;
    uv_signal_start(&cli->sigint, signal_cb, SIGINT);
    uv_signal_start(&cli->sigterm, signal_cb, SIGTERM);
    if (args.port >= 0 && forwarder_start(cli, args.port, &port) != 0) {
        cli_stop(cli);
        goto done;
    }

    if (port >= 0)
        printf("bootstrap: 127.0.0.1:%d,%s\n", port, broker_bootstraps(cli->broker));
    else
        printf("bootstrap: %s\n", broker_bootstraps(cli->broker));
    fflush(stdout);

    if (args.control && control_start(cli) != 0) {
        cli_stop(cli);
        goto done;
    }
    uv_run(&cli->loop, UV_RUN_DEFAULT);
    rc = 0;

done:
    if (loop_open) {
        /* Handles closed by cli_stop need one more turn to finish. */
        uv_run(&cli->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&cli->loop) != 0)
            log_warn("broker", "event loop closed with handles still open");
    }
    if (cli) {
        broker_stop(cli->broker);
        free(cli);
    }
    free(args.topics);
    return rc;
}
