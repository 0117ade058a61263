-- `luka lag` shows a group as kafka-consumer-groups --describe does: per
-- partition the committed offset, the log end offset, the lag and the
-- member it is assigned to (CONSUMER-ID, HOST, CLIENT-ID, from librdkafka's
-- DescribeConsumerGroups), for an app's groups or for groups named with
-- --group, as a table or as one JSON document; and says what is wrong with
-- every bad input.
--
-- `luka broker` (librdkafka 2.0.2's mock cluster) has no DescribeGroups,
-- so the specs that need members reach it through
-- spec/support/groups_shim.py, a proxy that answers DescribeGroups from the
-- SyncGroup and LeaveGroup requests of the real members it forwards.
-- KafkaJS, a client independent of librdkafka, reads the same offsets and
-- members.
local H = require "support.helper"

local broker, shim

setup(function()
  broker = H.broker_start { control = true, topics = { "lag_members:3", "lag_solo:2", "lag_other:1" } }
  local proc = H.spawn(("python3 %s %s"):format(H.q(H.root .. "/spec/support/groups_shim.py"),
    H.q(broker.addresses[1])))
  shim = { proc = proc, bootstrap = proc.wait_output("listening: (%S+)", 10, "the shim's address") }
end)

teardown(function()
  shim.proc.stop()
  broker.stop()
end)

local function lag(args, env)
  return H.run(("%s%s lag %s"):format(env or "", H.q(H.luka), args))
end

-- The rows of a lag table: a list of {column = value}, by the header.
local function rows(text)
  local lines, header, out = {}, nil, {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  for i, line in ipairs(lines) do
    local cells = {}
    for c in line:gmatch("%S+") do cells[#cells + 1] = c end
    if i == 1 then
      header = cells
    else
      local row = {}
      for k, name in ipairs(header) do row[name] = cells[k] end
      out[#out + 1] = row
    end
  end
  return out, header
end

local RECORD_ENV = "OUT=/dev/null TOPIC=lag_members GROUP=lag_members "

describe("luka lag with a luka consumer in the group", function()
  local consumer, out

  setup(function()
    local msgs = {}
    for n = 1, 30 do msgs[n] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
    H.kcat_produce(broker.bootstrap, "lag_members", msgs)
    out = H.tmpdir() .. "/out.jsonl"
    consumer = H.spawn(("%s run spec/fixtures/record.lua --brokers %s"):format(H.luka, shim.bootstrap),
      { env = { OUT = out, TOPIC = "lag_members", GROUP = "lag_members" } })
    H.wait_until(function() return #H.read_lines(out) >= 30 end, 30, "30 records")
  end)

  teardown(function() consumer.stop() end)

  it("shows each partition's member, the same in the table, in --json and in KafkaJS's describeGroups", function()
    -- Wait for the commits to catch up: then nothing lags.
    local doc = H.wait_until(function()
      local r = lag("spec/fixtures/record.lua --json --brokers " .. H.q(shim.bootstrap), RECORD_ENV)
      assert(r.code == 0, r.stderr)
      local d = H.json_decode(r.stdout)
      for _, p in ipairs(d.groups[1].partitions) do
        if p.current_offset ~= p.log_end_offset then return false end
      end
      return #d.groups[1].members == 1 and d
    end, 20, "every partition committed up to its end, and one member")
    assert.equal(0, doc.groups[1].lag)
    assert.equal(shim.bootstrap, doc.brokers)
    assert.equal(1, #doc.groups)
    local g = doc.groups[1]
    assert.equal("lag_members", g.group)
    assert.equal("Stable", g.state)
    assert.is_nil(g.members_error)
    local m = g.members[1]
    assert.truthy(#m.consumer_id > 0, "a consumer id")
    assert.equal("/127.0.0.1", m.host)
    assert.equal("luka", m.client_id)
    assert.equal(3, #m.assignment)
    assert.equal(3, #g.partitions)
    for i, p in ipairs(g.partitions) do
      assert.equal("lag_members", p.topic)
      assert.equal(i - 1, p.partition)
      assert.equal(p.log_end_offset, p.current_offset)
      assert.equal(0, p.lag)
      assert.equal(m.consumer_id, p.consumer_id)
      assert.equal(m.host, p.host)
      assert.equal(m.client_id, p.client_id)
      assert.equal("record", p.endpoint)
    end

    local r = lag("spec/fixtures/record.lua --brokers " .. H.q(shim.bootstrap), RECORD_ENV)
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stderr)
    local table_rows, header = rows(r.stdout)
    assert.same({ "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                  "HOST", "CLIENT-ID", "ENDPOINT" }, header)
    assert.equal(3, #table_rows)
    for i, row in ipairs(table_rows) do
      local p = g.partitions[i]
      assert.same({ GROUP = "lag_members", TOPIC = "lag_members", PARTITION = tostring(p.partition),
                    ["CURRENT-OFFSET"] = tostring(p.current_offset), ["LOG-END-OFFSET"] = tostring(p.log_end_offset),
                    LAG = "0", ["CONSUMER-ID"] = m.consumer_id, HOST = "/127.0.0.1", ["CLIENT-ID"] = "luka",
                    ENDPOINT = "record" }, row)
    end

    -- KafkaJS: the same member and assignment, the same offsets.
    local js = H.node("groups.js", { shim.bootstrap, "lag_members", "lag_members" }, { env = { DESCRIBE = "1" } })
    assert.equal(0, js.code, js.stderr)
    local k = js.lines[1]
    assert.equal("Stable", k.describe.state, js.stdout)
    assert.equal(1, #k.describe.members)
    assert.equal(m.consumer_id, k.describe.members[1].memberId)
    assert.equal("luka", k.describe.members[1].clientId)
    assert.equal("/127.0.0.1", k.describe.members[1].clientHost)
    assert.same({ 0, 1, 2 }, k.describe.members[1].assignment.lag_members)
    for _, p in ipairs(g.partitions) do
      assert.equal(p.current_offset, k.offsets.lag_members[tostring(p.partition)])
      assert.equal(p.log_end_offset, k.ends.lag_members[tostring(p.partition)])
    end
  end)

  it("names the group without the app, with the topics it committed offsets for", function()
    local r = lag("--group lag_members --json --brokers " .. H.q(shim.bootstrap))
    assert.equal(0, r.code, r.stderr)
    local g = H.json_decode(r.stdout).groups[1]
    assert.equal("lag_members", g.group)
    assert.equal(3, #g.partitions)
    for _, p in ipairs(g.partitions) do
      assert.equal("lag_members", p.topic)
      assert.equal(g.members[1].consumer_id, p.consumer_id)
      assert.is_nil(p.endpoint)
    end
    local t = lag("--group lag_members --brokers " .. H.q(shim.bootstrap))
    local _, header = rows(t.stdout)
    assert.same({ "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                  "HOST", "CLIENT-ID" }, header)
  end)

  it("shows no member once luka has left the group: the group is Empty, its offsets stay", function()
    assert.equal(0, consumer.stop())
    local r = lag("--group lag_members --json --brokers " .. H.q(shim.bootstrap))
    assert.equal(0, r.code, r.stderr)
    local g = H.json_decode(r.stdout).groups[1]
    assert.equal("Empty", g.state)
    assert.same({}, g.members)
    assert.equal(3, #g.partitions)
    for _, p in ipairs(g.partitions) do
      assert.is_nil(p.consumer_id)
      assert.equal(p.log_end_offset, p.current_offset)
    end
    local t = lag("--group lag_members --brokers " .. H.q(shim.bootstrap))
    for _, row in ipairs(rows(t.stdout)) do
      assert.equal("-", row["CONSUMER-ID"])
      assert.equal("-", row.HOST)
      assert.equal("-", row["CLIENT-ID"])
    end
  end)
end)

describe("luka lag without a member", function()
  setup(function()
    -- kcat commits lag_solo[0..1] for group lag_solo and leaves.
    H.kcat_produce(broker.bootstrap, "lag_solo", { { key = "a", value = "1" }, { key = "b", value = "2" },
                                                   { key = "c", value = "3" } })
    local got, err = H.kcat_consume(broker.bootstrap, "lag_solo", nil, { group = "lag_solo", timeout = 20 })
    assert(#got == 3, err)
    H.kcat_produce(broker.bootstrap, "lag_solo", { { key = "d", value = "4" } })
  end)

  it("shows '-' for the members on the embedded broker, which has no DescribeGroups, says so once, and exits 0", function()
    local r = lag("--group lag_solo --brokers " .. H.q(broker.bootstrap))
    assert.equal(0, r.code, r.stderr)
    assert.equal("luka lag: CONSUMER-ID, HOST and CLIENT-ID show '-': the cluster at " .. broker.bootstrap
      .. " does not answer DescribeGroups (the embedded broker does not)\n", r.stderr)
    -- What the group has not read: one message, on a partition it may not
    -- have committed anything for ("-": then the whole log lags).
    local unread, known = 0, 0
    for _, row in ipairs(rows(r.stdout)) do
      assert.equal("lag_solo", row.TOPIC)
      assert.equal("-", row["CONSUMER-ID"])
      assert.equal("-", row.HOST)
      assert.equal("-", row["CLIENT-ID"])
      unread = unread + tonumber(row["LOG-END-OFFSET"]) - (tonumber(row["CURRENT-OFFSET"]) or 0)
      known = known + (tonumber(row.LAG) or 0)
    end
    assert.equal(1, unread, r.stdout)

    local j = lag("--group lag_solo --json --brokers " .. H.q(broker.bootstrap))
    assert.equal(0, j.code, j.stderr)
    local g = H.json_decode(j.stdout).groups[1]
    assert.is_nil(g.members)
    assert.is_nil(g.state)
    assert.truthy(g.members_error:find("the cluster does not answer DescribeGroups", 1, true), g.members_error)
    assert.equal(known, g.lag, "the sum of the known lags")
  end)

  it("agrees with KafkaJS's fetchOffsets, which cannot describe the group on the embedded broker either", function()
    local j = lag("--group lag_solo --json --brokers " .. H.q(broker.bootstrap))
    local g = H.json_decode(j.stdout).groups[1]
    local js = H.node("groups.js", { broker.bootstrap, "lag_solo", "lag_solo" }, { env = { DESCRIBE = "1" } })
    assert.equal(0, js.code, js.stderr)
    local k = js.lines[1]
    assert.truthy(k.describe.error:find("does not support the requested API version", 1, true), k.describe.error)
    assert.equal(#g.partitions, 2)
    for _, p in ipairs(g.partitions) do
      local committed = k.offsets.lag_solo[tostring(p.partition)]
      if committed >= 0 then assert.equal(committed, p.current_offset) else assert.is_nil(p.current_offset) end
      assert.equal(p.log_end_offset, k.ends.lag_solo[tostring(p.partition)])
    end
  end)
end)

describe("luka lag's errors", function()
  it("says a group named without an app has no committed offsets, and exits 1", function()
    local r = lag("--group lag_nobody --brokers " .. H.q(broker.bootstrap))
    assert.equal(1, r.code)
    assert.equal("", r.stdout)
    assert.truthy(r.stderr:find("luka lag: group 'lag_nobody' has no committed offsets at " .. broker.bootstrap
      .. " (and its members could not be asked)", 1, true), r.stderr)
    -- Where the group can be described, that it has no members either.
    r = lag("--group lag_nobody --brokers " .. H.q(shim.bootstrap))
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("luka lag: group 'lag_nobody' has no committed offsets at " .. shim.bootstrap
      .. " and no members", 1, true), r.stderr)
  end)

  it("names the group and the broker's error when it cannot be described, shows the offsets, and exits 1", function()
    -- The describe's coordinator lookup is the first of the run.
    assert.equal("ok", broker.control("fail FindCoordinator 1 GROUP_AUTHORIZATION_FAILED"))
    local r = lag("--group lag_solo --brokers " .. H.q(shim.bootstrap))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("luka lag: group lag_solo: CONSUMER-ID, HOST and CLIENT-ID unknown: cannot "
      .. "describe the group: Broker: Group authorization failed", 1, true), r.stderr)
    assert.equal(2, #rows(r.stdout), r.stdout)
  end)

  it("names the brokers it cannot reach and exits 1", function()
    local r = lag("--group lag_solo --timeout 1s --brokers 127.0.0.1:1")
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("cannot read the cluster's metadata from 127.0.0.1:1", 1, true), r.stderr)
  end)

  it("refuses a --group the app has no endpoint in, suggesting the nearest, with exit 2", function()
    local r = lag("spec/fixtures/record.lua --group lag_membres --brokers 127.0.0.1:1", RECORD_ENV)
    assert.equal(2, r.code)
    assert.equal("luka lag: spec/fixtures/record.lua has no endpoint in group 'lag_membres' (did you mean "
      .. "'lag_members'?); see them with: luka check spec/fixtures/record.lua, or leave out APP; run 'luka "
      .. "lag --help'\n", r.stderr)
  end)
end)
