-- broker_spec.lua - `luka broker`: an embedded Kafka-protocol broker that
-- independent clients (kcat on librdkafka, KafkaJS) use like a real one,
-- with a fixed-port forwarder and a control channel for fault injection.
local H = require "support.helper"

local function sorted_by_offset(records)
  table.sort(records, function(a, b)
    if a.partition ~= b.partition then return a.partition < b.partition end
    return a.offset < b.offset
  end)
  return records
end

local function leader_of(bootstrap, topic, partition)
  local md = assert(H.kcat_metadata(bootstrap, { topic = topic }))
  for _, t in ipairs(md.topics) do
    if t.topic == topic then
      for _, p in ipairs(t.partitions) do
        if p.partition == partition then return p.leader end
      end
    end
  end
end

describe("luka broker", function()
  it("prints one bootstrap line listing every broker and exits 0 on SIGTERM", function()
    local b = H.broker_start({ brokers = 3 })
    assert.equal(3, #b.addresses)
    for _, address in ipairs(b.addresses) do
      assert.matches("^127%.0%.0%.1:%d+$", address)
    end
    local md = assert(H.kcat_metadata(b.bootstrap))
    assert.equal(3, #md.brokers)
    assert.equal(0, b.stop())
    assert.equal(1, #H.read_lines(b.proc.stdout_path))
  end)

  it("exits 0 on SIGINT", function()
    local b = H.broker_start()
    b.proc.kill("INT")
    assert.equal(0, b.proc.wait(10))
  end)

  it("carries keys, headers, partitions and any bytes from a kcat producer to a kcat consumer", function()
    local b = H.broker_start({ topics = { "orders:4" } })
    local binary = "\0\1\2 \255\254 \"quoted\" \\ \30\29\30 end"
    local sent = {
      { key = "alice", value = '{"id":1}', headers = { trace = "t-1", source = "spec" }, partition = 2 },
      { key = "bob", value = '{"id":2}', partition = 0 },
      { key = "carol", value = binary, headers = { kind = "bin=ary" }, partition = 3 },
      { value = "no key", partition = 1 },
      { key = "dave", value = nil, partition = 1 },
    }
    H.kcat_produce(b.bootstrap, "orders", sent)

    local got = sorted_by_offset(assert(H.kcat_consume(b.bootstrap, "orders", #sent)))
    assert.equal(#sent, #got)
    local by_partition = {}
    for _, r in ipairs(got) do
      by_partition[r.partition] = by_partition[r.partition] or {}
      table.insert(by_partition[r.partition], r)
    end
    assert.same({ "alice", '{"id":1}', { source = "spec", trace = "t-1" } },
      { by_partition[2][1].key, by_partition[2][1].value, by_partition[2][1].headers })
    assert.same({ "bob", '{"id":2}', 0 }, { by_partition[0][1].key, by_partition[0][1].value, by_partition[0][1].offset })
    assert.equal("carol", by_partition[3][1].key)
    assert.equal(binary, by_partition[3][1].value)
    assert.same({ kind = "bin=ary" }, by_partition[3][1].headers)
    assert.is_nil(by_partition[1][1].key)
    assert.equal("no key", by_partition[1][1].value)
    assert.equal("dave", by_partition[1][2].key)
    assert.is_nil(by_partition[1][2].value)
    assert.equal(0, b.stop())
  end)

  it("lets KafkaJS and kcat read each other's messages, KafkaJS in a consumer group", function()
    local b = H.broker_start({ topics = { "from-js:2", "from-kcat:3" } })

    local produced = H.node("produce.js", { b.bootstrap, "from-js" }, { messages = {
      { key = "k1", value = "one", headers = { origin = "kafkajs" }, partition = 0 },
      { key = "k2", value = "two", partition = 1 },
    } })
    assert.equal(0, produced.code, produced.stderr)
    local got = sorted_by_offset(assert(H.kcat_consume(b.bootstrap, "from-js", 2)))
    assert.same({ 0, "k1", "one", { origin = "kafkajs" } }, { got[1].partition, got[1].key, got[1].value, got[1].headers })
    assert.same({ 1, "k2", "two" }, { got[2].partition, got[2].key, got[2].value })

    H.kcat_produce(b.bootstrap, "from-kcat", {
      { key = "a", value = "alpha", headers = { origin = "kcat" }, partition = 0 },
      { key = "b", value = "beta", partition = 1 },
      { key = "c", value = "gamma", partition = 2 },
    })
    local consumed = H.node("consume.js", { b.bootstrap, "from-kcat", "3", "spec-group", "20000" })
    assert.equal(0, consumed.code, consumed.stderr)
    table.sort(consumed.lines, function(x, y) return x.partition < y.partition end)
    assert.same({ "a", "alpha", { origin = "kcat" } }, { consumed.lines[1].key, consumed.lines[1].value, consumed.lines[1].headers })
    assert.same({ "b", "beta" }, { consumed.lines[2].key, consumed.lines[2].value })
    assert.same({ "c", "gamma" }, { consumed.lines[3].key, consumed.lines[3].value })
    assert.equal(0, b.stop())
  end)

  it("serves clients on the fixed --port, listed first in the bootstrap", function()
    local port = H.free_port()
    local b = H.broker_start({ brokers = 2, port = port, topics = { "fixed:1" } })
    local fixed = "127.0.0.1:" .. port
    assert.equal(fixed, b.addresses[1])
    assert.equal(3, #b.addresses)
    H.kcat_produce(fixed, "fixed", { { key = "k", value = "through the forwarder" } })
    local got = assert(H.kcat_consume(fixed, "fixed", 1))
    assert.equal("through the forwarder", got[1].value)
    assert.equal(0, b.stop())
  end)

  it("picks a free port for --port 0", function()
    local b = H.broker_start({ port = 0 })
    assert.equal(2, #b.addresses)
    assert.truthy(H.kcat_metadata(b.addresses[1]))
    assert.equal(0, b.stop())
  end)

  it("creates --topic NAME:N with N partitions, 4 without N, and auto-creates unknown topics with 4", function()
    local b = H.broker_start({ topics = { "eight:8", "plain" } })
    assert.equal(8, H.partition_count(b.bootstrap, "eight"))
    assert.equal(4, H.partition_count(b.bootstrap, "plain"))
    assert.equal(4, H.partition_count(b.bootstrap, "never-created"))
    assert.equal(0, b.stop())
  end)

  it("keeps at most about 5 MiB per partition, dropping the oldest messages", function()
    local b = H.broker_start({ topics = { "small:1" } })
    local messages = {}
    for i = 1, 60 do
      messages[i] = { key = tostring(i), value = ("%05d"):format(i) .. ("x"):rep(100000) }
    end
    H.kcat_produce(b.bootstrap, "small", messages)
    local kept = assert(H.kcat_consume(b.bootstrap, "small", nil, { args = "-X fetch.max.bytes=10000000" }))
    local bytes = 0
    for _, r in ipairs(kept) do bytes = bytes + #r.value end
    assert.is_true(kept[1].offset > 0, "the oldest messages are gone")
    assert.equal(59, kept[#kept].offset)
    assert.is_true(bytes <= 5 * 1024 * 1024 + 200000, "about 5 MiB kept, got " .. bytes)
    assert.equal(0, b.stop())
  end)

  describe("with --control", function()
    local b

    before_each(function()
      b = H.broker_start({ brokers = 2, control = true, topics = { "events:2" } })
    end)

    after_each(function()
      b.stop()
    end)

    it("answers help with the command list, then ok", function()
      local reply, lines = b.control("help")
      assert.equal("ok", reply)
      local text = table.concat(lines, "\n")
      for _, command in ipairs({ "down", "up", "rtt", "fail", "leader", "coordinator", "topic" }) do
        assert.matches("\n?%s*" .. command .. " ", text)
      end
    end)

    it("answers ok to every command it knows", function()
      for _, command in ipairs({
        "down 2", "up 2", "down all", "up all", "rtt 1 0", "rtt all 0",
        "fail Produce 1 NOT_LEADER_FOR_PARTITION", "fail Fetch 2 TRANSPORT",
        "fail OffsetCommit 1 REBALANCE_IN_PROGRESS", "fail JoinGroup 1 NOT_COORDINATOR",
        "fail Heartbeat 1 REBALANCE_IN_PROGRESS", "fail SyncGroup 1 COORDINATOR_NOT_AVAILABLE",
        "fail Metadata 1 REQUEST_TIMED_OUT", "fail FindCoordinator 1 COORDINATOR_NOT_AVAILABLE",
        "fail ListOffsets 1 NOT_LEADER_FOR_PARTITION", "fail OffsetFetch 1 NOT_COORDINATOR",
        "fail LeaveGroup 1 16", "fail 0 1 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION",
        "leader events 0 2", "coordinator group some-group 2", "coordinator transaction some-txn 1",
        "topic made-later 3",
      }) do
        assert.equal("ok", (b.control(command)), command)
      end
    end)

    it("down all makes metadata requests fail and up all restores them", function()
      assert.equal("ok", (b.control("down all")))
      local md, err = H.kcat_metadata(b.bootstrap, { timeout = 1 })
      assert.is_nil(md)
      assert.matches("ERROR", err)
      assert.equal("ok", (b.control("up all")))
      assert.truthy(H.kcat_metadata(b.bootstrap))
    end)

    it("still delivers a message whose first produce request fails", function()
      assert.equal("ok", (b.control("fail Produce 1 NOT_LEADER_FOR_PARTITION")))
      H.kcat_produce(b.bootstrap, "events", { { key = "k", value = "retried", partition = 0 } })
      assert.equal("ok", (b.control("fail Produce 1 TRANSPORT")))
      H.kcat_produce(b.bootstrap, "events", { { key = "k", value = "reconnected", partition = 0 } })
      local got = sorted_by_offset(assert(H.kcat_consume(b.bootstrap, "events", 2, { partition = 0 })))
      assert.same({ "retried", "reconnected" }, { got[1].value, got[2].value })
    end)

    it("moves a partition's leader", function()
      for _, id in ipairs({ 1, 2 }) do
        assert.equal("ok", (b.control(("leader events 1 %d"):format(id))))
        assert.equal(id, leader_of(b.bootstrap, "events", 1))
      end
    end)

    it("creates a topic with the given partition count", function()
      assert.equal("ok", (b.control("topic later 6")))
      assert.equal(6, H.partition_count(b.bootstrap, "later"))
    end)

    it("delays responses by the rtt it is given", function()
      assert.equal("ok", (b.control("rtt all 400")))
      local t0 = H.now()
      assert.truthy(H.kcat_metadata(b.bootstrap))
      assert.is_true(H.now() - t0 >= 0.4)
      assert.equal("ok", (b.control("rtt all 0")))
    end)

    it("answers error: with a reason to bad commands, and keeps serving", function()
      for command, reason in pairs({
        ["bogus"] = "unknown command 'bogus'",
        ["down 7"] = "no broker '7'",
        ["down"] = "usage: down",
        ["rtt 1 soon"] = "MS 'soon'",
        ["fail Teleport 1 TRANSPORT"] = "unknown API 'Teleport'",
        ["fail Produce 1 NO_SUCH_ERROR"] = "unknown error 'NO_SUCH_ERROR'",
        ["fail Produce 0 TRANSPORT"] = "COUNT '0'",
        ["leader events 0 9"] = "no broker '9'",
        ["coordinator cluster x 1"] = "usage: coordinator",
        ["topic bad/name 2"] = "topic name 'bad/name'",
        ["topic t 0"] = "PARTITIONS '0'",
      }) do
        local reply = b.control(command)
        assert.matches("^error: ", reply, command)
        assert.matches(reason, reply, 1, true)
      end
      assert.equal("ok", (b.control("rtt 1 0")))
    end)

    it("keeps running when its control input ends, until a signal", function()
      b.close_control()
      H.wait_until(function() return b.log():find("end of input", 1, true) end, 5,
        "the broker to notice the end of its control input")
      assert.is_true(b.proc.alive())
      assert.truthy(H.kcat_metadata(b.bootstrap))
      assert.equal(0, b.stop())
    end)
  end)

  it("rejects an unknown option with exit code 2 and a message naming it", function()
    local r = H.run(H.q(H.luka) .. " broker --bogus")
    assert.equal(2, r.code)
    assert.matches("unknown option '--bogus'", r.stderr, 1, true)
    r = H.run(H.q(H.luka) .. " broker --topic orders:many")
    assert.equal(2, r.code)
    assert.matches("--topic", r.stderr, 1, true)
    r = H.run(H.q(H.luka) .. " broker --brokers")
    assert.equal(2, r.code)
    assert.matches("--brokers needs a value", r.stderr, 1, true)
  end)

  it("prints its usage and control commands for --help", function()
    local r = H.run(H.q(H.luka) .. " broker --help")
    assert.equal(0, r.code)
    for _, word in ipairs({ "--brokers", "--port", "--topic", "--control", "down BROKER_ID", "fail API COUNT ERROR" }) do
      assert.matches(word, r.stdout, 1, true)
    end
  end)
end)
