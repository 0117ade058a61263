// produce.js - send messages with KafkaJS, an implementation of the Kafka
// protocol independent of librdkafka.
//
//   node produce.js BOOTSTRAP TOPIC < messages
//
// stdin holds one JSON object per line: {"value": "...", "key": "...",
// "headers": {"name": "value"}, "partition": 0}; only value is required,
// and "value_base64" may stand for binary values.  All go in one acks=all
// batch.  Prints one JSON line per partition written:
// {"topic": ..., "partition": 0, "base_offset": 0}.  Exits 0 on success,
// 1 with the error on stderr.
'use strict';
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { readFileSync } = require('fs');

function usage() {
  process.stderr.write('usage: node produce.js BOOTSTRAP TOPIC < messages.jsonl\n');
  process.exit(2);
}

function toMessage(line) {
  const m = JSON.parse(line);
  const out = {
    value: m.value_base64 !== undefined ? Buffer.from(m.value_base64, 'base64')
      : m.value === undefined ? null : m.value,
  };
  if (m.key !== undefined && m.key !== null) out.key = m.key;
  if (m.headers) out.headers = m.headers;
  if (m.partition !== undefined && m.partition !== null) out.partition = m.partition;
  return out;
}

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  if (!bootstrap || !topic) usage();
  const messages = readFileSync(0, 'utf8').split('\n').filter((l) => l.trim() !== '').map(toMessage);
  const kafka = new Kafka({
    clientId: 'luka-spec-produce',
    brokers: bootstrap.split(','),
    logLevel: process.env.KAFKAJS_LOG ? logLevel.INFO : logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 100 },
  });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const results = await producer.send({ topic, messages, acks: -1 });
    for (const r of results) {
      process.stdout.write(JSON.stringify({
        topic: r.topicName, partition: r.partition, base_offset: Number(r.baseOffset),
      }) + '\n');
    }
  } finally {
    await producer.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(`produce.js: ${err.stack || err}\n`);
  process.exit(1);
});
