// kafkajs-http.js - the KafkaJS side of scripts/bench-io: a consumer group
// reading TOPIC from the beginning with eachMessage, 16 partitions handled
// concurrently, each message awaiting one HTTP GET (node's http, keep-alive).
//
//   NODE_PATH=spec/js/node_modules node kafkajs-http.js \
//       BOOTSTRAP TOPIC COUNT GROUP URL RECORDS [PARTITIONS_CONCURRENTLY]
//
// Like the luka apps of the bench: the clock and the CPU count start when
// the first message's handler starts and stop when the COUNT-th handler
// ends; then it writes one line "PARTITION OFFSET KEY" per handled message,
// in the order the handlers ended, to RECORDS, prints
// "done COUNT SECONDS CPU_SECONDS BAD OVERLAPS", leaves the group and exits.
// BAD counts requests that failed or did not answer 200; OVERLAPS counts
// handlers that started while one for the same key was still running.
'use strict';
const fs = require('fs');
const http = require('http');
const { performance } = require('perf_hooks');
const { Kafka, logLevel } = require('kafkajs');

const agent = new http.Agent({ keepAlive: true });

function get(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
  });
}

async function main() {
  const [bootstrap, topic, countArg, group, url, records, concArg] = process.argv.slice(2);
  const count = Number(countArg);
  const concurrently = Number(concArg || 16);
  if (!bootstrap || !topic || !Number.isInteger(count) || count < 1 || !group || !url || !records) {
    process.stderr.write('usage: node kafkajs-http.js BOOTSTRAP TOPIC COUNT GROUP URL RECORDS [N]\n');
    process.exit(2);
  }
  const kafka = new Kafka({
    clientId: 'luka-bench-io',
    brokers: bootstrap.split(','),
    logLevel: logLevel.ERROR,
  });
  const consumer = kafka.consumer({ groupId: group });
  const busy = new Set();
  const rec = [];
  let started = false;
  let n = 0;
  let bad = 0;
  let overlaps = 0;
  let t0 = 0;
  let cpu0 = null;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: concurrently,
    eachMessage: async ({ partition, message }) => {
      if (!started) {
        started = true;
        t0 = performance.now();
        cpu0 = process.cpuUsage();
      }
      const key = message.key.toString();
      if (busy.has(key)) overlaps += 1;
      busy.add(key);
      const status = await get(url + key);
      busy.delete(key);
      if (status !== 200) bad += 1;
      n += 1;
      rec.push(`${partition} ${message.offset} ${key}\n`);
      if (n === count) {
        const secs = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        fs.writeFileSync(records, rec.join(''));
        process.stdout.write(`done ${n} ${secs.toFixed(6)} ${((cpu.user + cpu.system) / 1e6).toFixed(6)} `
                             + `${bad} ${overlaps}\n`);
        finish();
      }
    },
  });
  await done;
  await consumer.disconnect();
  agent.destroy();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`kafkajs-http.js: ${err.stack || err}\n`);
  process.exit(1);
});
