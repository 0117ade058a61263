/* broker.c - the embedded Kafka-protocol broker: librdkafka's mock cluster
 * and the control commands that inject faults into it.  The `luka broker`
 * command around it is brokercli.c.
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
#include "kafka/broker.h"

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

#include "base/cliopt.h"
#include "base/log.h"

#define MAX_FAIL_COUNT 100000

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
    uint16_t ports[BROKER_MAX_BROKERS]; /* the brokers' listeners on 127.0.0.1 */
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

    while (p && *p && k->nports < BROKER_MAX_BROKERS) {
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

    if (nbrokers < 1 || nbrokers > BROKER_MAX_BROKERS) {
        errorf(errbuf, errlen, "broker count %d is not in 1..%d", nbrokers,
               BROKER_MAX_BROKERS);
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

int broker_check_topic_name(const char *name, char *errbuf, size_t errlen) {
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

    if (broker_check_topic_name(topic, errbuf, errlen) != 0) return -1;
    if (partitions < 1 || partitions > BROKER_MAX_PARTITIONS)
        return errorf(errbuf, errlen, "partition count %d is not in 1..%d",
                      partitions, BROKER_MAX_PARTITIONS);
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

static int parse_api(const char *s, int16_t *key, char *errbuf,
                     size_t errlen) {
    long v;

    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *key = api_keys[i].key;
            return 0;
        }
    }
    if (cliopt_long(s, 0, INT16_MAX, &v) == 0) {
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

    if (cliopt_long(s, INT_MIN, INT_MAX, &v) == 0) {
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
    if (cliopt_long(s, 1, b->nbrokers, &v) != 0)
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
    if (cliopt_long(argv[2], 0, 3600000, &ms) != 0)
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
    if (cliopt_long(argv[2], 1, MAX_FAIL_COUNT, &count) != 0)
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
    if (broker_check_topic_name(argv[1], errbuf, errlen) != 0) return -1;
    if (cliopt_long(argv[2], 0, BROKER_MAX_PARTITIONS - 1, &partition) != 0)
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
    if (cliopt_long(argv[2], 1, BROKER_MAX_PARTITIONS, &partitions) != 0)
        return errorf(errbuf, errlen, "PARTITIONS '%s' is not in 1..%d",
                      argv[2], BROKER_MAX_PARTITIONS);
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

void broker_print_commands(FILE *out) {
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
