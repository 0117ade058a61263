// kafkajs-consume.js - the KafkaJS side of scripts/bench: a consumer group
// reading TOPIC from the beginning with eachMessage + JSON.parse.
//
//   NODE_PATH=spec/js/node_modules node kafkajs-consume.js BOOTSTRAP TOPIC COUNT GROUP
//
// Times itself like the luka bench apps: the clock starts at the first
// message (so the group join is not counted) and stops at the COUNT-th,
// when it prints one line "done COUNT SECONDS", leaves the group and exits 0.
// A message that does not parse, or lacks orderId, is counted in "bad"
// and makes the exit code 1.
'use strict';
const { performance } = require('perf_hooks');
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, countArg, group] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap || !topic || !Number.isInteger(count) || count < 2 || !group) {
    process.stderr.write('usage: node kafkajs-consume.js BOOTSTRAP TOPIC COUNT GROUP\n');
    process.exit(2);
  }
  const kafka = new Kafka({
    clientId: 'luka-bench',
    brokers: bootstrap.split(','),
    logLevel: logLevel.ERROR,
  });
  const consumer = kafka.consumer({ groupId: group });
  let n = 0;
  let bad = 0;
  let t0 = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const order = JSON.parse(message.value.toString());
      if (order.orderId === undefined) bad += 1;
      n += 1;
      if (n === 1) t0 = performance.now();
      if (n === count) {
        process.stdout.write(`done ${n} ${((performance.now() - t0) / 1000).toFixed(6)}\n`);
        finish();
      }
    },
  });
  await done;
  await consumer.disconnect();
  if (bad) process.stderr.write(`kafkajs-consume.js: ${bad} message(s) without orderId\n`);
  process.exit(bad ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`kafkajs-consume.js: ${err.stack || err}\n`);
  process.exit(1);
});
