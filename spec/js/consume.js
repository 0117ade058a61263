// consume.js - read messages with a KafkaJS consumer in a consumer group,
// from the beginning of the topic.
//
//   node consume.js BOOTSTRAP TOPIC COUNT [GROUP] [TIMEOUT_MS]
//
// Prints one JSON line per message: {"topic", "partition", "offset",
// "key", "value", "value_base64", "headers": {"name": "value"}} (key and
// value null when absent), then leaves the group.  Exits 0 after COUNT
// messages, or 1 when TIMEOUT_MS (default 20000) passes first.
'use strict';
const { Kafka, logLevel } = require('kafkajs');

function usage() {
  process.stderr.write('usage: node consume.js BOOTSTRAP TOPIC COUNT [GROUP] [TIMEOUT_MS]\n');
  process.exit(2);
}

function str(buf) {
  return buf === null || buf === undefined ? null : buf.toString('utf8');
}

async function main() {
  const [bootstrap, topic, countArg, groupArg, timeoutArg] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap || !topic || !Number.isInteger(count) || count < 1) usage();
  const group = groupArg || `luka-spec-${process.pid}`;
  const timeoutMs = Number(timeoutArg || 20000);

  const kafka = new Kafka({
    clientId: 'luka-spec-consume',
    brokers: bootstrap.split(','),
    logLevel: process.env.KAFKAJS_LOG ? logLevel.INFO : logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 100 },
  });
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
  });
  let seen = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(() => finish(1), timeoutMs);

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic: t, partition, message }) => {
      if (seen >= count) return;
      const headers = {};
      for (const [k, v] of Object.entries(message.headers || {})) {
        headers[k] = Array.isArray(v) ? v.map(str) : str(v);
      }
      process.stdout.write(JSON.stringify({
        topic: t,
        partition,
        offset: Number(message.offset),
        key: str(message.key),
        value: str(message.value),
        value_base64: message.value === null ? null : message.value.toString('base64'),
        headers,
      }) + '\n');
      seen += 1;
      if (seen >= count) finish(0);
    },
  });
  const code = await done;
  clearTimeout(timer);
  await consumer.disconnect();
  if (code !== 0) process.stderr.write(`consume.js: timed out after ${timeoutMs} ms with ${seen} of ${count} messages\n`);
  process.exit(code);
}

main().catch((err) => {
  process.stderr.write(`consume.js: ${err.stack || err}\n`);
  process.exit(1);
});
