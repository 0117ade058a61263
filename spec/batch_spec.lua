-- Batch handlers (handle_batch) against `luka broker`: batches cut at
-- batch.max and after batch.wait, resolve(i) then a failure (the rest
-- retried as a batch, then dead-lettered one by one), dedup, one batch at
-- a time per partition with partitions in parallel, publishing, the
-- batch-size metric, a reload and a kill -9 in the middle of a batch.
-- The app is spec/fixtures/batch.lua; the test kit's deliver_batch and the
-- option checks run without a broker.
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { topics = { "b_max:1", "b_wait:1", "b_fail:1", "b_fail_dlt:1",
    "b_dedup:1", "b_par:4", "b_pub:2", "b_pub_out:2", "b_reload:1", "b_kill:2", "b_sqlite:2" } }
end)
teardown(function() broker.stop() end)

local function start(topic, env, args)
  return H.run_fixture("spec/fixtures/batch.lua", broker, topic, env, args)
end

-- The lines of out: calls { partition, size, first, last, attempt, start,
-- stop, version } and messages { partition, offset, version }.
local function read(out)
  local calls, msgs = {}, {}
  for _, l in ipairs(H.read_lines(out)) do
    local p, n, f, la, a, s, e, v = l:match("^call (%d+) (%d+) (%d+) (%d+) (%d+) ([%d.]+) ([%d.]+) (%S+)")
    if p then
      calls[#calls + 1] = { partition = tonumber(p), size = tonumber(n), first = tonumber(f),
        last = tonumber(la), attempt = tonumber(a), start = tonumber(s), stop = tonumber(e), version = v }
    end
    local mp, mo, mv = l:match("^msg (%d+) (%d+) (%S+)")
    if mp then msgs[#msgs + 1] = { partition = tonumber(mp), offset = tonumber(mo), version = mv } end
  end
  return calls, msgs
end

local function wait_msgs(out, n, timeout)
  return H.wait_until(function()
    local calls, msgs = read(out)
    return #msgs >= n and calls, msgs
  end, timeout or 30, n .. " messages handled")
end

local function payloads(n, from, extra)
  local list = {}
  for i = 1, n do
    list[i] = { value = ('{"i":%d%s}'):format((from or 0) + i, extra and extra(i) or "") }
  end
  return list
end

local function sizes(calls)
  local s = {}
  for i, c in ipairs(calls) do s[i] = c.size end
  return s
end

describe("batch handlers", function()
  it("cut a batch at batch.max messages", function()
    H.kcat_produce(broker.bootstrap, "b_max", payloads(25))
    -- A wait far longer than the spec: only max cuts the first two.
    local p, out = start("b_max", { MAX = "10", WAIT = "3s" })
    local calls = wait_msgs(out, 25)
    assert.same({ 10, 10, 5 }, sizes(calls))
    assert.same({ 0, 10, 20 }, { calls[1].first, calls[2].first, calls[3].first })
    assert.same({ 9, 19, 24 }, { calls[1].last, calls[2].last, calls[3].last })
    assert.equal(0, p.stop(20))
  end)

  it("cut a smaller batch after batch.wait", function()
    local p, out = start("b_wait", { MAX = "1000", WAIT = "1s" })
    p.wait_output("assigned", 20, "the assignment")
    H.kcat_produce(broker.bootstrap, "b_wait", payloads(5))
    local calls, msgs = wait_msgs(out, 5)
    assert.equal(5, #msgs)
    local total = 0
    for _, c in ipairs(calls) do
      assert.is_true(c.size < 1000)
      total = total + c.size
    end
    assert.equal(5, total)
    -- Five messages produced in one go wait for one another.
    assert.is_true(#calls < 5, "batches: " .. table.concat(sizes(calls), ","))
    assert.equal(0, p.stop(20))
  end)

  it("after resolve(i) and an error, retries the rest as a batch, then dead-letters it message by message", function()
    -- Offsets 0..9; offset 4 fails every time.
    H.kcat_produce(broker.bootstrap, "b_fail", payloads(10, 0, function(i)
      return i == 5 and ',"fail":true' or ""
    end))
    local p, out = start("b_fail", { MAX = "10", WAIT = "2s", DLT = "b_fail_dlt" })
    -- Six dead letters: offsets 4..9, the unresolved rest.
    local dead, err = H.kcat_consume(broker.bootstrap, "b_fail_dlt", 6, { timeout = 30 })
    assert.is_nil(err)
    assert.equal(6, #dead)
    for i, d in ipairs(dead) do
      local h = d.headers
      assert.equal(tostring(3 + i), h["luka-dlt-original-offset"])
      assert.equal("b_fail", h["luka-dlt-original-topic"])
      assert.equal("0", h["luka-dlt-original-partition"])
      assert.equal("b_fail", h["luka-dlt-group"])
      assert.equal("b", h["luka-dlt-endpoint"])
      assert.equal("2", h["luka-dlt-attempts"])
      assert.truthy(h["luka-dlt-error"]:find("cannot handle offset 4", 1, true), h["luka-dlt-error"])
      assert.truthy(h["luka-dlt-traceback"]:find("stack traceback", 1, true))
      assert.equal(('{"i":%d%s}'):format(4 + i, i == 1 and ',"fail":true' or ""), d.value)
    end
    local calls = read(out)
    -- The whole batch, then its unresolved rest once more (the delayed retry).
    assert.equal(2, #calls)
    assert.same({ 10, 0, 9, 1 }, { calls[1].size, calls[1].first, calls[1].last, calls[1].attempt })
    assert.same({ 6, 4, 9, 2 }, { calls[2].size, calls[2].first, calls[2].last, calls[2].attempt })
    assert.equal(0, p.stop(20))
    -- Everything was settled and committed: a restart of the same group
    -- gets only what comes next.
    local p2, out2 = start("b_fail", { MAX = "10", WAIT = "50ms", DLT = "b_fail_dlt" })
    p2.wait_output("assigned", 20, "the assignment")
    H.kcat_produce(broker.bootstrap, "b_fail", payloads(1, 100))
    local calls2 = wait_msgs(out2, 1)
    assert.same({ 1, 10, 10 }, { calls2[1].size, calls2[1].first, calls2[1].last })
    assert.equal(0, p2.stop(20))
  end)

  it("leaves messages dedup has seen out of the batch", function()
    local function with_ids(ids)
      local list = {}
      for i, id in ipairs(ids) do list[i] = { value = ('{"n":%d}'):format(i), headers = { id = id } } end
      return list
    end
    local p, out = start("b_dedup", { MAX = "100", WAIT = "300ms", DEDUP = "1" })
    p.wait_output("assigned", 20, "the assignment")
    H.kcat_produce(broker.bootstrap, "b_dedup", with_ids { "a", "b", "c" })
    wait_msgs(out, 3)
    H.kcat_produce(broker.bootstrap, "b_dedup", with_ids { "b", "c", "d" })
    H.wait_until(function() return p.output():find("already handled: skipped from the batch", 1, true) end,
      20, "the skips")
    local calls, msgs = wait_msgs(out, 4)
    assert.equal(4, #msgs)
    -- The second batch held only "d", at offset 5.
    assert.same({ 1, 5, 5 }, { calls[#calls].size, calls[#calls].first, calls[#calls].last })
    assert.equal(0, p.stop(20))
  end)

  it("run one batch at a time per partition, partitions in parallel up to concurrency", function()
    local msgs = {}
    for i = 1, 40 do msgs[i] = { value = ('{"i":%d}'):format(i), partition = i % 4 } end
    H.kcat_produce(broker.bootstrap, "b_par", msgs)
    local p, out = start("b_par", { MAX = "4", WAIT = "20ms", CONCURRENCY = "4", SLEEP_MS = "150" })
    local calls = wait_msgs(out, 40, 60)
    local by = {}
    for _, c in ipairs(calls) do
      by[c.partition] = by[c.partition] or {}
      table.insert(by[c.partition], c)
    end
    for part, list in pairs(by) do
      table.sort(list, function(a, b) return a.start < b.start end)
      for i = 2, #list do
        assert.is_true(list[i].start >= list[i - 1].stop - 1e-4, "partition " .. part .. " overlapped")
        assert.equal(list[i - 1].last + 1, list[i].first, "partition " .. part .. " in offset order")
      end
    end
    -- Some two batches of different partitions ran at once.
    local overlap = false
    for i, a in ipairs(calls) do
      for j = i + 1, #calls do
        local b = calls[j]
        if a.partition ~= b.partition and a.start < b.stop and b.start < a.stop then overlap = true end
      end
    end
    assert.is_true(overlap, "no two partitions' batches overlapped")
    assert.equal(0, p.stop(20))
  end)

  it("publish from a batch, and count batch sizes in luka_batch_size", function()
    local port = H.free_port()
    H.kcat_produce(broker.bootstrap, "b_pub", payloads(30))
    local p, out = start("b_pub", { MAX = "7", WAIT = "2s", OUT_TOPIC = "b_pub_out" },
      ("--http 127.0.0.1:%d"):format(port))
    wait_msgs(out, 30)
    local got, err = H.kcat_consume(broker.bootstrap, "b_pub_out", 30, { timeout = 20 })
    assert.is_nil(err)
    local seen = {}
    for _, r in ipairs(got) do
      local j = H.json_decode(r.value)
      seen[j.partition .. ":" .. j.offset] = true
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.equal(30, n)
    local calls = read(out)
    -- /metrics serves figures the loop refreshes now and then: wait for
    -- the last batch to show.
    local m, count, sum, le7
    H.wait_until(function()
      m = H.metrics(port)
      for _, s in ipairs(m.samples) do
        if s.labels.endpoint == "b" then
          if s.name == "luka_batch_size_count" then count = s.value end
          if s.name == "luka_batch_size_sum" then sum = s.value end
          if s.name == "luka_batch_size_bucket" and s.labels.le == "10" then le7 = s.value end
        end
      end
      return sum == 30
    end, 10, "30 messages in luka_batch_size")
    assert.equal("histogram", m.types.luka_batch_size)
    assert.equal(#calls, count)
    assert.equal(30, sum)
    assert.equal(#calls, le7)
    assert.equal(0, p.stop(20))
  end)

  it("keeps batching across a reload, with the new code", function()
    local dir = H.tmpdir()
    local app = H.read_file("spec/fixtures/batch.lua")
    H.write_file(dir .. "/app.lua", app)
    local out = dir .. "/out"
    local p = H.spawn(("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap),
      { env = { TOPIC = "b_reload", GROUP = "b_reload", OUT = out, MAX = "5", WAIT = "100ms" } })
    p.wait_output("assigned", 20, "the assignment")
    H.kcat_produce(broker.bootstrap, "b_reload", payloads(5))
    wait_msgs(out, 5)
    H.write_file(dir .. "/app.lua", (app:gsub('os.getenv%("VERSION"%) or "v1"', '"v2"')))
    p.kill("HUP")
    p.wait_output("reload: reloaded", 20, "the reload")
    H.kcat_produce(broker.bootstrap, "b_reload", payloads(5, 5))
    local _, msgs = wait_msgs(out, 10)
    assert.equal(10, #msgs)
    for i, m in ipairs(msgs) do assert.equal(i <= 5 and "v1" or "v2", m.version) end
    assert.is_nil(p.output():find("revoked", 1, true))
    assert.equal(0, p.stop(20))
  end)

  it("loses nothing when killed with -9 in the middle of a batch", function()
    local total = 300
    local msgs = {}
    for i = 1, total do msgs[i] = { value = ('{"i":%d}'):format(i), partition = i % 2 } end
    H.kcat_produce(broker.bootstrap, "b_kill", msgs)
    local dir = H.tmpdir()
    local out = dir .. "/out"
    local env = { MAX = "20", WAIT = "20ms", SLEEP_MS = "200", CONCURRENCY = "2", OUT = out }
    local p = start("b_kill", env)
    -- Killed while batches run: some handled, some not yet.
    H.wait_until(function() local _, m = read(out); return #m >= 60 end, 30, "some batches")
    p.kill("KILL")
    p.wait(10)
    local _, before = read(out)
    assert.is_true(#before < total, "killed before the end")
    env.SLEEP_MS = "0"
    local p2 = start("b_kill", env)
    H.wait_until(function()
      local seen, n = {}, 0
      for _, m in ipairs(select(2, read(out))) do
        local k = m.partition .. ":" .. m.offset
        if not seen[k] then seen[k], n = true, n + 1 end
      end
      return n >= total
    end, 60, "every message handled after the restart")
    assert.equal(0, p2.stop(20))
  end)

  it("runs the README's SQLite batch example", function()
    local dir = H.tmpdir()
    local src = H.read_file("config/examples/batch_sqlite.lua")
    H.write_file(dir .. "/app.lua", (src:gsub('"orders"', '"b_sqlite"')))
    local list = {}
    for i = 1, 50 do
      list[i] = { key = "c" .. (i % 5), value = ('{"id":"o-%d","customer":"c%d","total":%d.5}'):format(i, i % 5, i) }
    end
    -- One order twice: the table's primary key keeps one row.
    list[51] = list[1]
    H.kcat_produce(broker.bootstrap, "b_sqlite", list)
    local p = H.spawn(("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap))
    local py = [[
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("select count(*), sum(total) from orders").fetchone())
]]
    H.write_file(dir .. "/count.py", py)
    local r = H.wait_until(function()
      local r = H.run(("%s %s %s"):format(H.PY, H.q(dir .. "/count.py"), H.q(dir .. "/orders.db")))
      return r.stdout:find("(50, ", 1, true) and r
    end, 30, "50 orders in orders.db")
    assert.truthy(r.stdout:find("(50, 1300.0)", 1, true), r.stdout)
    assert.equal(0, p.stop(20))
  end)
end)

describe("handle_batch in the test kit", function()
  it("deliver_batch cuts at batch.max, reports each message and the calls", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, batch = { max = 3 },
  handle_batch = function(batch)
    local ids = {}
    for i, m in ipairs(batch) do ids[i] = m.msg.id end
    luka.publish("out", { ids = ids, partition = batch.partition, topic = batch.topic })
  end }
]], [[
local test = require "luka.test"
it("batches", function()
  local app = test.load("app.lua")
  local list = {}
  for i = 1, 7 do list[i] = { { id = i }, { partition = 2 } } end
  local r = app:deliver_batch("c", list)
  assert.same({ 3, 3, 1 }, r.calls)
  for i = 1, 7 do
    assert.equal("handled", r[i].outcome)
    assert.is_true(r[i].committed)
    assert.equal(1, r[i].attempts)
  end
  -- What a call publishes is listed under its first message.
  assert.same({ 1, 2, 3 }, r[1].published[1].payload.ids)
  assert.equal(2, r[1].published[1].payload.partition)
  assert.equal("in", r[1].published[1].payload.topic)
  assert.equal(0, #r[2].published)
  assert.same({ 7 }, r[7].published[1].payload.ids)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("deliver_batch: resolve, retries per batch, dead letters per message, dedup, decode errors", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.consumer "c" { topics = { "in" }, batch = { max = 10 },
  retry = { instant = 1, delayed = { initial = "2s", attempts = 1 } }, error_channel = "dlt",
  dedup = { key = "id" },
  handle_batch = function(batch)
    for i, m in ipairs(batch) do
      if m.msg.fail then batch:resolve(i - 1); error("bad " .. m.msg.id) end
    end
  end }
]], [[
local test = require "luka.test"
it("fails the unresolved rest", function()
  local app = test.load("app.lua")
  local r = app:deliver_batch("c", {
    { { id = "a" } }, { { id = "b" } }, { { id = "c", fail = true } }, { { id = "d" } } })
  -- The whole batch and the rest at once (instant); after the backoff,
  -- the rest again, and at once again.
  assert.same({ 4, 2, 2, 2 }, r.calls)
  assert.equal("handled", r[1].outcome)
  assert.equal("handled", r[2].outcome)
  for i = 3, 4 do
    assert.equal("dead_lettered", r[i].outcome)
    assert.is_true(r[i].committed)
    assert.equal(4, r[i].attempts)
    assert.same({ 2000 }, r[i].retries)
    assert.equal("dlt", r[i].dead_letter.topic)
    assert.truthy(r[i].dead_letter.headers["luka-dlt-error"]:find("bad c", 1, true))
    assert.equal("4", r[i].dead_letter.headers["luka-dlt-attempts"])
  end
  -- a and b were handled: dedup leaves them out of the next batch.
  local r2 = app:deliver_batch("c", { { { id = "a" } }, { { id = "e" } }, { "not json" } })
  assert.same({ 1 }, r2.calls)
  assert.equal("deduplicated", r2[1].outcome)
  assert.equal("handled", r2[2].outcome)
  assert.equal("dead_lettered", r2[3].outcome)
  assert.truthy(r2[3].error:find("decode error", 1, true))
  app:close()
end)

]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("holds every commit of a batch until its publishes are acknowledged", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, retry = { delayed = { initial = "1s", attempts = 2 } },
  handle_batch = function(batch)
    for _, m in ipairs(batch) do luka.publish("out", { id = m.msg.id }) end
  end }
]], [[
local test = require "luka.test"
it("retries from the first message when a publish fails", function()
  local app = test.load("app.lua")
  local r = app:deliver_batch("c", { { { id = 1 } }, { { id = 2 } }, { { id = 3 } } })
  assert.same({ 3 }, r.calls)
  for i = 1, 3 do assert.is_true(r[i].committed) end
  assert.equal(3, #r[1].published)
  -- The first publish is not acknowledged: the first message carries the
  -- call's publishes, so it is retried, and nothing after it commits (in
  -- production the seek back brings 2 and 3 again).
  app:fail_publishes(1)
  r = app:deliver_batch("c", { { { id = 4 } }, { { id = 5 } }, { { id = 6 } } })
  assert.same({ 3, 1 }, r.calls)
  assert.equal("handled", r[1].outcome)
  assert.equal(2, r[1].attempts)
  assert.same({ 1000 }, r[1].retries)
  assert.is_true(r[1].committed)
  assert.is_false(r[2].committed)
  assert.is_false(r[3].committed)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("refuses a bad resolve with a clear error", function()
    local r = H.luka_test([[
local luka = require "luka"
local kept
luka.consumer "c" { topics = { "in" }, final_failure = "ignore",
  handle_batch = function(batch)
    if batch[1].msg.late then return kept:resolve(1) end
    kept = batch
    batch:resolve(#batch + 1)
  end }
]], [[
local test = require "luka.test"
it("names the range, then the call that is over", function()
  local app = test.load("app.lua")
  local r = app:deliver_batch("c", { { { n = 1 } }, { { n = 2 } } })
  assert.equal("ignored", r[1].outcome)
  assert.truthy(r[1].error:find("batch:resolve(3): give how many messages are done, from 0 to 2", 1, true), r[1].error)
  r = app:deliver_batch("c", { { { late = true } } })
  assert.truthy(r[1].error:find("this batch's call is over", 1, true), r[1].error)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)
end)

describe("handle_batch options", function()
  local function check(opts)
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", ([[
local luka = require "luka"
luka.consumer "c" { topics = { "in" }, %s }
]]):format(opts))
    return H.run(("%s check %s/app.lua"):format(H.luka, dir))
  end

  it("are checked with clear errors", function()
    local r = check("handle = function() end, handle_batch = function() end")
    assert.is_not.equal(0, r.code)
    assert.truthy(r.stderr:find("both handle and handle_batch are given", 1, true), r.stderr)
    r = check("batch = { max = 5 }, handle = function() end")
    assert.truthy(r.stderr:find("option 'batch' goes with handle_batch", 1, true), r.stderr)
    r = check("batch = { max = 0 }, handle_batch = function() end")
    assert.truthy(r.stderr:find("option 'batch': option 'max' must be an integer >= 1", 1, true), r.stderr)
    r = check("batch = { max = 10001 }, handle_batch = function() end")
    assert.truthy(r.stderr:find("max = 10001 is more than an endpoint holds in flight (10000); use at most 10000", 1, true), r.stderr)
    r = check('batch = { wait = "soon" }, handle_batch = function() end')
    assert.truthy(r.stderr:find("bad duration 'soon'", 1, true), r.stderr)
    r = check('batch = { size = 5 }, handle_batch = function() end')
    assert.truthy(r.stderr:find("unknown option 'size'", 1, true), r.stderr)
    r = check('ordering = "key", concurrency = 2, handle_batch = function() end')
    assert.truthy(r.stderr:find('ordering = "key" does not go with handle_batch', 1, true), r.stderr)
    r = check("")
    assert.truthy(r.stderr:find("or handle_batch = function(batch) ... end", 1, true), r.stderr)
    r = check('batch = { max = 50, wait = "1s" }, handle_batch = function() end')
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("batches: up to 50 messages of one partition, cut after 1000 ms", 1, true), r.stdout)
  end)
end)
