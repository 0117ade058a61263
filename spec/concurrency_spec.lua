-- Concurrent handlers against `luka broker`: many messages in flight, with
-- the order each ordering mode promises, commits that never pass a message
-- still running, revokes and reloads in the middle of running handlers.
-- The handler (spec/fixtures/concurrent.lua) waits on luka.sleep and
-- records when each message started and ended.
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { topics = { "conc_key:4", "conc_partition:4", "conc_none:4",
    "conc_slow_key:1", "conc_slow_partition:1", "conc_slow_none:1", "conc_revoke_key:4",
    "conc_revoke_partition:4", "conc_revoke_none:4", "conc_abandon:2", "conc_reload:2",
    "conc_buffer:2" } }
end)
teardown(function() broker.stop() end)

local function start(topic, env, args)
  return H.run_fixture("spec/fixtures/concurrent.lua", broker, topic, env, args)
end

-- { key, partition, offset, start, stop } per handled message.
local function records(out)
  local list = {}
  for _, l in ipairs(H.read_lines(out)) do
    local k, p, o, s, e = l:match("^(%S+) (%d+) (%d+) ([%d.]+) ([%d.]+)")
    if k then
      list[#list + 1] = { key = k, partition = tonumber(p), offset = tonumber(o),
        start = tonumber(s), stop = tonumber(e) }
    end
  end
  return list
end

local function wait_records(out, n, timeout)
  return H.wait_until(function()
    local r = records(out)
    return #r >= n and r
  end, timeout or 60, ("%d messages handled"):format(n), 0.05)
end

-- Groups records by fn(record), each group sorted by start time.
local function by(list, fn)
  local groups = {}
  for _, r in ipairs(list) do
    local g = fn(r)
    groups[g] = groups[g] or {}
    table.insert(groups[g], r)
  end
  for _, g in pairs(groups) do table.sort(g, function(a, b) return a.start < b.start end) end
  return groups
end

-- Asserts that within each group messages ran one after another, in
-- offset order.
local function assert_serial(groups, what)
  for name, g in pairs(groups) do
    for i = 2, #g do
      assert(g[i].start >= g[i - 1].stop - 1e-4, ("%s %s: offset %d started at %.4f before offset %d "
        .. "ended at %.4f"):format(what, name, g[i].offset, g[i].start, g[i - 1].offset, g[i - 1].stop))
      assert(g[i].offset > g[i - 1].offset, ("%s %s: offset %d ran after offset %d"):format(what,
        name, g[i].offset, g[i - 1].offset))
    end
  end
end

-- The most messages that ran at the same moment.
local function peak(list)
  local ev = {}
  for _, r in ipairs(list) do
    ev[#ev + 1] = { t = r.start, d = 1 }
    ev[#ev + 1] = { t = r.stop, d = -1 }
  end
  table.sort(ev, function(a, b) return a.t < b.t or (a.t == b.t and a.d < b.d) end)
  local n, most = 0, 0
  for _, e in ipairs(ev) do
    n = n + e.d
    most = math.max(most, n)
  end
  return most
end

-- 40 messages over 8 keys, and 8 without a key, spread by kcat's
-- partitioner over 4 partitions.
local function keyed(n, keys)
  local msgs = {}
  for i = 1, n do
    msgs[#msgs + 1] = { key = "k" .. (i % keys), value = ('{"i":%d,"ms":%d}'):format(i, 10 + (i * 7) % 40) }
  end
  return msgs
end

local function unique(list)
  local seen, n = {}, 0
  for _, r in ipairs(list) do
    local id = r.partition .. ":" .. r.offset
    if not seen[id] then seen[id], n = true, n + 1 end
  end
  return n
end

describe("concurrency", function()
  it("ordering = key: one message per key at a time, in offset order, keys overlapping", function()
    local msgs = keyed(40, 8)
    for i = 1, 8 do msgs[#msgs + 1] = { value = ('{"i":%d,"ms":30}'):format(100 + i) } end
    H.kcat_produce(broker.bootstrap, "conc_key", msgs)
    local p, out = start("conc_key", { CONCURRENCY = "8" })
    local list = wait_records(out, #msgs)
    assert.equal(#msgs, #list)
    assert.equal(#msgs, unique(list))
    assert_serial(by(list, function(r) return r.key ~= "-" and r.key or ("keyless " .. r.partition) end), "key")
    local most = peak(list)
    assert(most > 1 and most <= 8, "peak concurrency " .. most)
    assert.equal(0, p.stop(20))
  end)

  it("ordering = partition: one message per partition at a time, partitions overlapping", function()
    H.kcat_produce(broker.bootstrap, "conc_partition", keyed(40, 8))
    local p, out = start("conc_partition", { CONCURRENCY = "8", ORDERING = "partition" })
    local list = wait_records(out, 40)
    assert.equal(40, unique(list))
    assert_serial(by(list, function(r) return r.partition end), "partition")
    local most = peak(list)
    assert(most > 1 and most <= 4, "peak concurrency " .. most .. " (4 partitions)")
    assert.equal(0, p.stop(20))
  end)

  it("ordering = none: up to concurrency at once, even within a key", function()
    H.kcat_produce(broker.bootstrap, "conc_none", keyed(40, 2))
    local p, out = start("conc_none", { CONCURRENCY = "6", ORDERING = "none", SLEEP_MS = "100", FAST = "1" })
    local list = wait_records(out, 40)
    assert.equal(40, unique(list))
    local most = peak(list)
    assert(most > 2 and most <= 6, "peak concurrency " .. most)
    local overlap = false
    for _, g in pairs(by(list, function(r) return r.key end)) do
      for i = 2, #g do overlap = overlap or g[i].start < g[i - 1].stop end
    end
    assert.is_true(overlap, "messages of one key ran at once")
    assert.equal(0, p.stop(20))
  end)

  -- Commits and revokes, under each ordering: the offset tracker and the
  -- revoke's wait do not depend on it, but what runs at once does.
  for _, ordering in ipairs({ "key", "partition", "none" }) do
    it(("ordering = %s: a slow message holds back its partition's commit, and kill -9 then "
        .. "restart loses nothing"):format(ordering), function()
      local topic = "conc_slow_" .. ordering
      local msgs = {}
      for i = 0, 29 do
        msgs[#msgs + 1] = { key = "k" .. i, value = ('{"i":%d,"ms":%d}'):format(i, i == 9 and 60000 or 10) }
      end
      H.kcat_produce(broker.bootstrap, topic, msgs)
      local p, out = start(topic, { CONCURRENCY = "16", ORDERING = ordering })
      -- Everything but offset 9 (which waits a minute) is handled; one
      -- message at a time per partition stops at it.
      wait_records(out, ordering == "partition" and 9 or 29)
      H.sleep(2.5) -- two commit intervals: whatever may be committed is
      p.kill("KILL")
      p.wait(10)
      for _, r in ipairs(records(out)) do assert(r.offset ~= 9, "the slow message did not finish") end
      -- Restarted without the slow wait: offset 9 comes again, and so does
      -- every offset after it, done or not, never committed past 9.
      local p2, out2 = start(topic, { CONCURRENCY = "16", ORDERING = ordering, FAST = "1" })
      wait_records(out2, 21)
      H.sleep(1)
      local offs = {}
      for _, r in ipairs(records(out2)) do offs[#offs + 1] = r.offset end
      table.sort(offs)
      assert.equal(9, offs[1], "the restart begins at the slow message")
      assert.equal(21, #offs, "offsets 9..29 came again, nothing before: " .. table.concat(offs, ","))
      assert.equal(0, p2.stop(20))
    end)

    it(("ordering = %s: a revoke waits for the running handlers of its partitions"):format(ordering),
      function()
      local topic = "conc_revoke_" .. ordering
      local msgs = {}
      for i = 1, 16 do msgs[i] = { key = "k" .. i, value = ('{"i":%d,"ms":3000}'):format(i) } end
      H.kcat_produce(broker.bootstrap, topic, msgs)
      local dir = H.tmpdir()
      -- Four partitions: one message at a time each under "partition".
      local running = ordering == "partition" and 4 or 16
      local p, out = start(topic, { CONCURRENCY = "16", ORDERING = ordering, STARTED = dir .. "/started" })
      H.wait_until(function() return #H.read_lines(dir .. "/started") >= running end, 30,
        running .. " handlers running")
      local other = H.spawn(("kcat -b %s -G %s -X session.timeout.ms=6000 "
        .. "-X auto.offset.reset=earliest -X enable.auto.commit=false -q %s"):format(broker.bootstrap,
        topic, topic))
      p.wait_output("handler%(s%) of the revoked partitions", 30, "the revoke waiting for handlers")
      local waited_at = H.now()
      p.wait_output("revoked " .. topic, 10, "the revoke")
      -- Every handler running then ended before the partitions went back.
      local list = wait_records(out, running, 20)
      assert.is_true(#list >= running)
      assert.is_nil(p.output():find("abandoned", 1, true), p.output())
      assert(H.now() - waited_at < 6, "the revoke did not wait past its handlers")
      other.stop(20)
      assert.equal(0, p.stop(20))
    end)
  end

  it("a handler running past the drain timeout of a revoke is abandoned, uncommitted", function()
    local msgs = {}
    for i = 1, 4 do msgs[i] = { key = "k" .. i, value = ('{"i":%d,"ms":60000}'):format(i) } end
    H.kcat_produce(broker.bootstrap, "conc_abandon", msgs)
    local dir = H.tmpdir()
    local p = start("conc_abandon", { CONCURRENCY = "8", STARTED = dir .. "/started" },
      "--drain-timeout 1s")
    H.wait_until(function() return #H.read_lines(dir .. "/started") >= 4 end, 30, "4 handlers running")
    -- A second luka joins and takes half; what the first gave up comes
    -- again there, since nothing of it was committed.
    local dir2 = H.tmpdir()
    local p2 = start("conc_abandon", { CONCURRENCY = "8", STARTED = dir2 .. "/started", FAST = "1" })
    p.wait_output("abandoned, uncommitted", 30, "the running handlers abandoned")
    H.wait_until(function() return #H.read_lines(dir2 .. "/started") >= 1 end, 30,
      "the second luka handling what the first gave up")
    p2.stop(20)
    p.stop(20)
  end)

  it("a reload with handlers in flight: they finish on the old code, new messages get the new", function()
    local dir = H.tmpdir()
    local app = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
luka.consumer "c" { topics = { "conc_reload" }, group = "conc_reload", concurrency = 8,
  config = { ["auto.offset.reset"] = "earliest" },
  handle = function(msg, meta)
    assert(luka.sleep(msg.ms))
    out:write(("%d VERSION\n"):format(msg.i))
  end }
]]
    local path = H.write_file(dir .. "/app.lua", app:gsub("VERSION", "v1"))
    local msgs = {}
    for i = 1, 8 do msgs[i] = { key = "k" .. i, value = ('{"i":%d,"ms":2500}'):format(i) } end
    H.kcat_produce(broker.bootstrap, "conc_reload", msgs)
    local p = H.spawn(("%s run %s --brokers %s"):format(H.luka, path, broker.bootstrap),
      { env = { OUT = dir .. "/out" } })
    p.wait_output("assigned conc_reload", 30, "the assignment")
    H.sleep(1) -- the eight are waiting now
    H.write_file(path, (app:gsub("VERSION", "v2")))
    p.kill("HUP")
    p.wait_output("reloaded", 10, "the reload")
    local more = {}
    for i = 9, 12 do more[#more + 1] = { key = "k" .. i, value = ('{"i":%d,"ms":10}'):format(i) } end
    H.kcat_produce(broker.bootstrap, "conc_reload", more)
    local lines = H.wait_until(function()
      local l = H.read_lines(dir .. "/out")
      return #l >= 12 and l
    end, 30, "12 messages handled")
    local version = {}
    for _, l in ipairs(lines) do
      local i, v = l:match("^(%d+) (v%d)$")
      assert.is_nil(version[tonumber(i)], "message " .. i .. " handled twice")
      version[tonumber(i)] = v
    end
    for i = 1, 8 do assert.equal("v1", version[i], "message " .. i) end
    for i = 9, 12 do assert.equal("v2", version[i], "message " .. i) end
    p.wait_output("its state is closed", 10, "the old state closed after its last handler")
    assert.equal(0, p.stop(20))
  end)

  it("a full buffer stops taking messages until half have gone, losing nothing", function()
    local msgs = {}
    for i = 1, 300 do msgs[i] = { key = "same", value = ('{"i":%d,"ms":2}'):format(i) } end
    H.kcat_produce(broker.bootstrap, "conc_buffer", msgs)
    local dir = H.tmpdir()
    local app = H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
luka.consumer "c" { topics = { "conc_buffer" }, group = "conc_buffer", concurrency = 4, buffer = 20,
  config = { ["auto.offset.reset"] = "earliest" },
  handle = function(msg, meta)
    assert(luka.sleep(msg.ms))
    out:write(("%d %d\n"):format(meta.partition, meta.offset))
  end }
]])
    local p = H.spawn(("%s run %s --brokers %s --log-level debug"):format(H.luka, app, broker.bootstrap),
      { env = { OUT = dir .. "/out" } })
    local lines = H.wait_until(function()
      local l = H.read_lines(dir .. "/out")
      return #l >= 300 and l
    end, 60, "300 messages handled")
    local seen = {}
    for _, l in ipairs(lines) do
      assert.is_nil(seen[l], l .. " handled twice")
      seen[l] = true
    end
    assert.truthy(p.output():find("taking no more until half have gone", 1, true), p.output())
    assert.truthy(p.output():find("buffer has room again", 1, true), p.output())
    assert.equal(0, p.stop(20))
  end)
end)
