/* brokercli.c - the `luka broker` command: the embedded broker in a process
 * of its own, whose libuv loop adds a fixed-port TCP forwarder (--port) and
 * a control channel on stdin (--control) for fault injection. */
#include "kafka/broker.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "base/cliopt.h"
#include "base/log.h"

/* Command-line options, declared once: they drive parsing, errors and
 * --help. */
enum { OPT_BROKERS, OPT_PORT, OPT_TOPIC, OPT_CONTROL, NOPTS };

static const cliopt_t options[NOPTS] = {
    [OPT_BROKERS] = {"brokers", 0, "N", "number of brokers, ids 1..N (default 1)"},
    [OPT_PORT] = {"port", 0, "P",
                  "also serve clients on 127.0.0.1:P (0: a free port),\n"
                  "forwarded to broker 1 and listed first in the bootstrap"},
    [OPT_TOPIC] = {"topic", 0, "NAME[:PARTITIONS]",
                   "create a topic (default 4 partitions); repeatable"},
    [OPT_CONTROL] = {"control", 0, NULL, "read control commands from stdin, one per line"},
};

static void print_control(FILE *out) {
    fputs("\n"
          "control commands (--control), each answered on stdout by \"ok\" or\n"
          "\"error: REASON\"; end of input leaves the broker running:\n",
          out);
    broker_print_commands(out);
}

static const clicmd_t broker_cmd = {
    .name = "broker",
    .synopsis = "broker [--brokers N] [--port P] [--topic NAME[:PARTITIONS]]... [--control]",
    .about = "Run a Kafka-protocol broker (librdkafka's mock cluster) on loopback until\n"
             "SIGINT or SIGTERM.  The first line on stdout is \"bootstrap: ADDR[,ADDR]...\".\n"
             "Unknown topics are created with 4 partitions on first use; each partition\n"
             "keeps at most 5 MiB or 100000 message sets, dropping the oldest.",
    .opts = options,
    .nopts = NOPTS,
    .print_after = print_control,
};

#define bad_option(...) cliopt_bad_usage("broker", __VA_ARGS__)

typedef struct topic_spec {
    char name[250]; /* Kafka allows 249 characters */
    int partitions;
} topic_spec_t;

typedef struct cli_args {
    int nbrokers;
    int port; /* -1: no forwarder */
    int control;
    topic_spec_t *topics;
    int ntopics;
} cli_args_t;

/* NAME[:PARTITIONS].  0, or the exit code. */
static int parse_topic_spec(const char *spec, topic_spec_t *t) {
    char errbuf[300];
    const char *colon = strchr(spec, ':');
    size_t namelen = colon ? (size_t)(colon - spec) : strlen(spec);
    long partitions = BROKER_DEFAULT_PARTITIONS;

    if (namelen >= sizeof(t->name))
        return bad_option("--topic: topic name must have 1..249 characters");
    memcpy(t->name, spec, namelen);
    t->name[namelen] = '\0';
    if (colon && cliopt_long(colon + 1, 1, BROKER_MAX_PARTITIONS, &partitions) != 0)
        return bad_option("--topic %s: partition count '%s' is not in 1..%d",
                          t->name, colon + 1, BROKER_MAX_PARTITIONS);
    if (broker_check_topic_name(t->name, errbuf, sizeof(errbuf)) != 0)
        return bad_option("--topic: %s", errbuf);
    t->partitions = (int)partitions;
    return 0;
}

static int option(void *ud, int opt, const char *value) {
    cli_args_t *a = ud;
    long v;
    switch (opt) {
    case CLIOPT_ARG:
        return bad_option("unexpected argument '%s'", value);
    case OPT_BROKERS:
        if (cliopt_long(value, 1, BROKER_MAX_BROKERS, &v) != 0)
            return bad_option("--brokers: '%s' is not in 1..%d", value, BROKER_MAX_BROKERS);
        a->nbrokers = (int)v;
        break;
    case OPT_PORT:
        if (cliopt_long(value, 0, 65535, &v) != 0)
            return bad_option("--port: '%s' is not a port (0..65535)", value);
        a->port = (int)v;
        break;
    case OPT_TOPIC:
        return parse_topic_spec(value, &a->topics[a->ntopics++]);
    case OPT_CONTROL:
        a->control = 1;
        break;
    }
    return 0;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, cli_args_t *a) {
    a->nbrokers = 1;
    a->port = -1;
    if (!(a->topics = calloc((size_t)argc + 1, sizeof(*a->topics)))) {
        fprintf(stderr, "luka broker: out of memory\n");
        return 1;
    }
    return cliopt_parse(&broker_cmd, argc, argv, option, a);
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
        broker_print_commands(stdout);
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

    if ((rc = parse_args(argc, argv, &args)) >= 0) goto done;
    rc = 1;
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
