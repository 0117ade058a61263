// groups.js - what KafkaJS's admin client says about a consumer group: its
// committed offsets, the topics' log end offsets and, with DESCRIBE=1, its
// members (describeGroups).
//
//   node groups.js BOOTSTRAP GROUP TOPIC...
//
// Prints one JSON line: {"offsets": {topic: {partition: offset}} (-1 when
// nothing is committed), "ends": {topic: {partition: high watermark}},
// "describe": {"state", "members": [{"memberId", "clientId", "clientHost",
// "assignment": {topic: [partitions]}}]} or {"error": message}}.
'use strict';
const { Kafka, AssignerProtocol, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, group, ...topics] = process.argv.slice(2);
  if (!bootstrap || !group || topics.length === 0) {
    process.stderr.write('usage: node groups.js BOOTSTRAP GROUP TOPIC...\n');
    process.exit(2);
  }
  const kafka = new Kafka({
    clientId: 'luka-spec-groups',
    brokers: bootstrap.split(','),
    logLevel: process.env.KAFKAJS_LOG ? logLevel.INFO : logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 100 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const out = { offsets: {}, ends: {} };
  for (const t of await admin.fetchOffsets({ groupId: group, topics })) {
    out.offsets[t.topic] = {};
    for (const p of t.partitions) out.offsets[t.topic][p.partition] = Number(p.offset);
  }
  for (const topic of topics) {
    out.ends[topic] = {};
    for (const p of await admin.fetchTopicOffsets(topic)) out.ends[topic][p.partition] = Number(p.high);
  }
  if (process.env.DESCRIBE) {
    try {
      const { groups } = await admin.describeGroups([group]);
      const g = groups[0];
      out.describe = {
        state: g.state,
        members: g.members.map((m) => {
          const decoded = m.memberAssignment.length
            ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
          return {
            memberId: m.memberId,
            clientId: m.clientId,
            clientHost: m.clientHost,
            assignment: decoded ? decoded.assignment : {},
          };
        }),
      };
    } catch (e) {
      out.describe = { error: `${e.name}: ${e.message}` };
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  await admin.disconnect();
}

main().catch((e) => {
  process.stderr.write(`groups.js: ${e.stack || e}\n`);
  process.exit(1);
});
