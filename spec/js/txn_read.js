// txn_read.js - read a whole topic with KafkaJS, a client independent of
// librdkafka, as a read_committed reader (KafkaJS's default: records of
// aborted or still open transactions are never returned), and count how
// often each value came.
//
//   node txn_read.js BOOTSTRAP TOPIC EXPECTED [TIMEOUT_MS] [UNCOMMITTED]
//
// Reads from the beginning until EXPECTED messages came and then nothing
// more for 2 s (a duplicate would come in that time), or TIMEOUT_MS
// (default 60000) passes.  UNCOMMITTED = "1" reads read_uncommitted.
// Prints one JSON line: {"n": messages, "distinct": distinct values,
// "dups": messages beyond the first of their value, "values": {value:
// count} for the values that came more than once}.
'use strict';
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, expectedArg, timeoutArg, uncommitted] = process.argv.slice(2);
  const expected = Number(expectedArg);
  const timeoutMs = Number(timeoutArg || 60000);
  const kafka = new Kafka({
    clientId: 'luka-spec-txn-read',
    brokers: bootstrap.split(','),
    logLevel: process.env.KAFKAJS_LOG ? logLevel.INFO : logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 100 },
  });
  const consumer = kafka.consumer({
    groupId: `luka-spec-txn-${process.pid}-${Date.now()}`,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
    readUncommitted: uncommitted === '1',
  });
  const counts = new Map();
  let n = 0;
  let last = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const v = message.value === null ? '' : message.value.toString('utf8');
      counts.set(v, (counts.get(v) || 0) + 1);
      n += 1;
      last = Date.now();
    },
  });
  const start = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    if (Date.now() - start > timeoutMs) break;
    if (n >= expected && Date.now() - last > 2000) break;
  }
  await consumer.disconnect();
  const values = {};
  let dups = 0;
  for (const [v, c] of counts) if (c > 1) { dups += c - 1; values[v] = c; }
  process.stdout.write(JSON.stringify({ n, distinct: counts.size, dups, values }) + '\n');
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`txn_read.js: ${err.stack || err}\n`);
  process.exit(1);
});
