/* txn_offsets.c - luka's offsets topic, __luka_offsets (see txn.h): each
 * commit writes the input offsets there in the same transaction, since
 * the embedded broker's mock keeps no group offsets of a transaction; an
 * assignment reads them back (on the thread) before it is taken, and
 * `luka lag` reads them too.  Also the config of the topic's readers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "kafka/txn.h"
#include "kafka/txn_int.h"

/* How long reading the offsets topic back may take. */
#define RESTORE_MS 30000

static int64_t offset_of(const char *value, size_t len) {
    char buf[32];
    if (len == 0 || len >= sizeof(buf)) return -1;
    memcpy(buf, value, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

int txn_read_offsets(rd_kafka_conf_t *conf, const char *group,
                     rd_kafka_topic_partition_list_t *parts, const volatile int *cancel,
                     char *errbuf, size_t errlen) {
    char why[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_queue_t *q = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    int nparts = 0, eofs = 0;
    size_t glen = strlen(group);
    uint64_t deadline;

    errbuf[0] = '\0';

    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errlen, "offsets reader: %s", why);
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, TXN_OFFSETS_TOPIC, NULL);
    if ((err = rd_kafka_metadata(rk, 0, rkt, &md, 10000)) != 0) {
        snprintf(errbuf, errlen, "metadata of %s: %s", TXN_OFFSETS_TOPIC,
                 rd_kafka_err2str(err));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) goto out; /* none written yet */
    nparts = md->topics[0].partition_cnt;
    q = rd_kafka_queue_new(rk);
    for (int p = 0; p < nparts; p++)
        rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q);
    deadline = (uint64_t)time(NULL) + RESTORE_MS / 1000;
    while (eofs < nparts) {
        rd_kafka_message_t *m;
        if ((cancel && *cancel) || (uint64_t)time(NULL) > deadline) {
            snprintf(errbuf, errlen,
                     "%s was not read to its end in %d s (an open transaction of an instance "
                     "that died holds it until transaction.timeout.ms)",
                     TXN_OFFSETS_TOPIC, RESTORE_MS / 1000);
            break;
        }
        if (!(m = rd_kafka_consume_queue(q, 100))) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (m->err) {
            snprintf(errbuf, errlen, "reading %s: %s", TXN_OFFSETS_TOPIC,
                     rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            break;
        } else if (m->key && m->key_len > glen + 4) {
            /* "<topic>/<partition>/<group>" */
            const char *k = m->key, *end = k + m->key_len;
            const char *s1 = memchr(k, '/', m->key_len), *s2;
            if (s1 && (s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1))) &&
                (size_t)(end - s2 - 1) == glen && memcmp(s2 + 1, group, glen) == 0) {
                int32_t partition = (int32_t)strtol(s1 + 1, NULL, 10);
                for (int i = 0; i < parts->cnt; i++) {
                    rd_kafka_topic_partition_t *e = &parts->elems[i];
                    if (e->partition == partition && strlen(e->topic) == (size_t)(s1 - k) &&
                        memcmp(e->topic, k, (size_t)(s1 - k)) == 0)
                        e->offset = offset_of(m->payload, m->len);
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < nparts; p++) rd_kafka_consume_stop(rkt, p);
out:
    if (md) rd_kafka_metadata_destroy(md);
    if (q) rd_kafka_queue_destroy(q);
    if (rkt) rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return errbuf[0] ? -1 : 0;
}

/* The group's committed offsets of r's partitions, where the offsets
 * topic has none or an older one (a real cluster stores both). */
static void merge_committed(txn_t *t, restore_t *r) {
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(r->parts);
    for (int i = 0; i < c->cnt; i++) c->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    if (rd_kafka_committed(t->ep->rk, c, 10000) == 0)
        for (int i = 0; i < c->cnt; i++)
            if (c->elems[i].offset >= 0 && c->elems[i].offset > r->parts->elems[i].offset)
                r->parts->elems[i].offset = c->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(c);
}

void txn_offsets_read_back(txn_t *t, restore_t *r) {
    txn_read_offsets(rd_kafka_conf_dup(t->reader_conf), t->ep->flow.conf->group, r->parts,
                     &r->cancelled, r->error, sizeof(r->error));
    if (!r->error[0] && !r->cancelled) merge_committed(t, r);
}

rd_kafka_conf_t *txn_reader_conf(const kafka_env_t *env, char *why, size_t len) {
    rd_kafka_conf_t *c = kafka_conf(env, NULL, why, len);
    if (!c) return NULL;
    if (rd_kafka_conf_set(c, "isolation.level", "read_committed", why, len) ||
        rd_kafka_conf_set(c, "enable.partition.eof", "true", why, len) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", why, len) ||
        rd_kafka_conf_set(c, "group.id", "luka.offsets-reader", why, len)) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    /* Its log lines and errors would be served on the reading thread. */
    rd_kafka_conf_set_log_cb(c, NULL);
    rd_kafka_conf_set_error_cb(c, NULL);
    return c;
}

/* The offsets of the transaction: per partition the next offset to read,
 * for the group (send_offsets_to_transaction) and as records of the
 * offsets topic, produced now in the same transaction.  Off by one: a
 * committed offset is the last done + 1, which offsets_t's commit is. */
rd_kafka_topic_partition_list_t *txn_offsets_write(txn_t *t) {
    endpoint_t *ep = t->ep;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(ep->nparts);
    for (int i = 0; i < ep->nparts; i++) {
        offsets_t *o = ep->parts[i]->offsets;
        /* Every assigned partition's, moved or not: the mock keeps at
         * most 100,000 message sets per partition, and a record written
         * once could age out of __luka_offsets behind busier ones. */
        int64_t off = o->commit >= 0 ? o->commit : ep->parts[i]->txn_base;
        char key[512], value[32];
        int klen, vlen;
        rd_kafka_resp_err_t err;
        if (off < 0) continue;
        rd_kafka_topic_partition_list_add(l, o->topic, o->partition)->offset = off;
        klen = snprintf(key, sizeof(key), "%s/%d/%s", o->topic, (int)o->partition,
                        ep->flow.conf->group);
        vlen = snprintf(value, sizeof(value), "%lld", (long long)off);
        err = rd_kafka_producev(t->pub->rk, RD_KAFKA_V_TOPIC(TXN_OFFSETS_TOPIC),
                                RD_KAFKA_V_KEY(key, (size_t)klen), RD_KAFKA_V_VALUE(value, (size_t)vlen),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err) {
            log_at(LOG_ERROR, "txn", EP_CTX(ep), "writing the offset of %s[%d] to %s: %s",
                   o->topic, (int)o->partition, TXN_OFFSETS_TOPIC, rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(l);
            return NULL;
        }
    }
    return l;
}
