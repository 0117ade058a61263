-- Failure policies: instant and delayed retry, the error channel, the final
-- failure strategies, non-retryable failures and deduplication, each shown
-- by what the handler saw and what was committed.
local H = require "support.helper"

local broker

-- Writes an app into a fresh directory and returns its path.  The app gets
-- `record(...)`, which appends its arguments as a JSON line to $OUT.
local function app(body)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(...) out:write(luka.json.encode({ ... }), "\n") end
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
]] .. body)
  return dir .. "/app.lua", dir .. "/out.jsonl"
end

local function run(path, out, args)
  return H.spawn(("%s run %s --brokers %s %s"):format(H.luka, path, broker.bootstrap, args or ""),
    { env = { OUT = out } })
end

local lines = H.jsonl
local function wait_lines(out, n, what, timeout)
  return H.wait_jsonl(out, n, what or (n .. " handler calls"), timeout)
end

local function produce(topic, ns, partition)
  local msgs = {}
  for i, n in ipairs(ns) do
    msgs[i] = { key = "k" .. n, value = ('{"n":%d}'):format(n), partition = partition,
      headers = { origin = "spec" } }
  end
  H.kcat_produce(broker.bootstrap, topic, msgs)
end

setup(function()
  broker = H.broker_start { topics = { "instant:1", "delayed:2", "slow:1", "dlt_in:1", "dlt_out:1",
    "fn_in:1", "ignore:1", "resend:1", "release:1", "decode:1", "decode_dlt:1", "fatal:1",
    "fatal_dlt:1", "pubdlt_in:1", "dedup:1", "dedup_sqlite:1", "dedup_redis:4", "pub_dlt:1" } }
end)
teardown(function() broker.stop() end)

describe("instant retry", function()
  it("calls the handler again at once, with meta.attempt counting, and commits on success", function()
    local path, out = app([[
local calls = 0
luka.consumer "c" { topics = { "instant" }, config = config, retry = { instant = 2 },
  handle = function(msg, meta)
    record(msg.n, meta.attempt)
    if msg.n == 1 and meta.attempt < 3 then error("not yet") end
  end }
]])
    produce("instant", { 1, 2 })
    local p = run(path, out)
    local r = wait_lines(out, 4)
    assert.equal(0, p.stop())
    assert.same({ { 1, 1 }, { 1, 2 }, { 1, 3 }, { 2, 1 } }, r)
    -- Committed: a restart hands nothing again.
    p = run(path, out)
    H.sleep(5)
    p.stop()
    assert.equal(4, #lines(out))
  end)
end)

describe("delayed retry", function()
  it("retries after the backoff, before anything after it in its partition, while other partitions flow", function()
    local path, out = app([[
luka.consumer "c" { topics = { "delayed" }, config = config,
  retry = { delayed = { initial = "1s", attempts = 3 } },
  handle = function(msg, meta)
    record(msg.n, meta.partition, meta.attempt, luka.now())
    if msg.n == 1 and meta.attempt < 3 then error("not yet") end
  end }
]])
    produce("delayed", { 1, 2, 3 }, 0)
    produce("delayed", { 11, 12, 13 }, 1)
    local p = run(path, out)
    local r = wait_lines(out, 8)
    assert.equal(0, p.stop())
    local order0, attempts1, t = {}, {}, {}
    for _, l in ipairs(r) do
      if l[2] == 0 then order0[#order0 + 1] = l[1] end
      if l[1] == 1 then attempts1[#attempts1 + 1] = l[3]; t[#t + 1] = l[4] end
    end
    assert.same({ 1, 1, 1, 2, 3 }, order0, "partition 0 keeps its order")
    assert.same({ 1, 2, 3 }, attempts1)
    assert.is_true(t[2] - t[1] >= 0.9 and t[3] - t[2] >= 1.9, "backoff 1 s then 2 s")
    -- Partition 1 was not held up by partition 0's backoff.
    local p1_done
    for i, l in ipairs(r) do if l[1] == 13 then p1_done = i end end
    local retried
    for i, l in ipairs(r) do if l[1] == 1 and l[3] == 3 then retried = i end end
    assert.is_true(p1_done < retried, "the other partition flowed during the backoff")
  end)

  it("waits longer than max.poll.interval.ms without leaving the group", function()
    local path, out = app([[
luka.consumer "c" { topics = { "slow" },
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000,
             ["max.poll.interval.ms"] = 7000 },
  retry = { delayed = { initial = "10s", attempts = 1 } },
  handle = function(msg, meta)
    record(msg.n, meta.attempt)
    if meta.attempt == 1 then error("later") end
  end }
]])
    produce("slow", { 1 })
    local p = run(path, out)
    local r = wait_lines(out, 2, "the retry after 10 s", 40)
    local log = p.output()
    assert.equal(0, p.stop())
    assert.same({ { 1, 1 }, { 1, 2 } }, r)
    local _, assigned = log:gsub("assigned", "")
    assert.equal(1, assigned, "assigned once, never revoked:\n" .. log)
    assert.falsy(log:find("revoked", 1, true))
    assert.falsy(log:find("max.poll", 1, true), log)
  end)
end)

describe("jitter", function()
  -- luka test delivers without a broker and records each backoff, so the
  -- same failing message in two processes shows what each process drew.
  -- Six draws of thousands of milliseconds each agree by chance with a
  -- negligible probability.
  local runs = 0
  local function backoffs(dir)
    runs = runs + 1
    local out = dir .. "/backoffs" .. runs
    local r = H.run(("cd %s && OUT=%s %s test ."):format(H.q(dir), H.q(out), H.luka))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local list = {}
    for n in assert(H.read_file(out)):gmatch("%d+") do list[#list + 1] = tonumber(n) end
    return list
  end

  it("draws different backoffs in each process", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, final_failure = "ignore",
  retry = { delayed = { initial = "10s", multiplier = 2, max = "10m", attempts = 6, jitter = true } },
  handle = function() error("always") end }
]])
    H.write_file(dir .. "/jitter_spec.lua", [[
local test = require "luka.test"
it("records the backoffs", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", { n = 1 })
  local f = assert(io.open(os.getenv("OUT"), "w"))
  f:write(table.concat(r.retries, ","), "\n")
  f:close()
  app:close()
end)
]])
    local a, b = backoffs(dir), backoffs(dir)
    assert.equal(6, #a)
    assert.equal(6, #b)
    for i = 1, 6 do
      local full = 10000 * 2 ^ (i - 1)
      assert.is_true(a[i] >= full / 2 and a[i] <= full, ("backoff %d: %d"):format(i, a[i]))
    end
    assert.are_not.same(a, b)
  end)
end)

describe("error channel", function()
  it("dead-letters to a topic with the original key, value and headers plus where and why", function()
    local path, out = app([[
luka.consumer "c" { topics = { "dlt_in" }, group = "dlt_group", config = config,
  retry = { instant = 1 }, error_channel = "dlt_out",
  handle = function(msg, meta)
    record(msg.n, meta.attempt)
    if msg.n == 1 then error("cannot handle " .. msg.n) end
  end }
]])
    produce("dlt_in", { 1, 2 })
    local p = run(path, out)
    wait_lines(out, 3)
    local d = H.kcat_consume(broker.bootstrap, "dlt_out", 1, { timeout = 20 })[1]
    assert.equal(0, p.stop())
    assert.equal("k1", d.key)
    assert.equal('{"n":1}', d.value)
    local h = d.headers
    assert.equal("spec", h.origin, "original headers kept")
    assert.equal("dlt_in", h["luka-dlt-original-topic"])
    assert.equal("0", h["luka-dlt-original-partition"])
    assert.equal("0", h["luka-dlt-original-offset"])
    assert.truthy(tonumber(h["luka-dlt-original-timestamp"]))
    assert.equal("dlt_group", h["luka-dlt-group"])
    assert.equal("c", h["luka-dlt-endpoint"])
    assert.equal("2", h["luka-dlt-attempts"])
    assert.truthy(h["luka-dlt-error"]:find("cannot handle 1", 1, true))
    assert.truthy(h["luka-dlt-traceback"]:find("stack traceback", 1, true))
    assert.truthy(h["luka-dlt-failed-at"]:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"))
    -- The original was committed once dead-lettered.
    p = run(path, out)
    H.sleep(5)
    p.stop()
    assert.equal(3, #lines(out))
  end)

  it("dead-letters through a declared publisher", function()
    local path, out = app([[
luka.publisher "deadLetters" { topic = "pub_dlt" }
luka.consumer "c" { topics = { "pubdlt_in" }, config = config, error_channel = "deadLetters",
  handle = function(msg) record(msg.n); error("no") end }
]])
    produce("pubdlt_in", { 7 })
    local p = run(path, out)
    local d = H.kcat_consume(broker.bootstrap, "pub_dlt", 1, { timeout = 20 })[1]
    p.stop()
    assert.equal('{"n":7}', d.value)
    assert.equal("pubdlt_in", d.headers["luka-dlt-original-topic"])
  end)

  it("hands the message to a function with the error, and commits when it returns", function()
    local path, out = app([[
luka.consumer "c" { topics = { "fn_in" }, config = config,
  error_channel = function(msg, meta, err) record("channel", msg.n, meta.offset, err.message, err.attempts) end,
  handle = function(msg) error("broken " .. msg.n) end }
]])
    produce("fn_in", { 5 })
    local p = run(path, out)
    local r = wait_lines(out, 1)
    assert.equal(0, p.stop())
    assert.equal("channel", r[1][1])
    assert.equal(5, r[1][2])
    assert.truthy(r[1][4]:find("broken 5", 1, true))
    assert.equal(1, r[1][5])
  end)
end)

describe("final failure", function()
  it("ignore logs, counts and commits, and the next message is handled", function()
    local path, out = app([[
luka.consumer "c" { topics = { "ignore" }, config = config, final_failure = "ignore",
  handle = function(msg) record(msg.n); if msg.n == 1 then error("skip me") end end }
]])
    produce("ignore", { 1, 2 })
    local p = run(path, out)
    wait_lines(out, 2)
    local log = p.output()
    assert.equal(0, p.stop())
    assert.truthy(log:find("final failure: ignore", 1, true))
    p = run(path, out)
    H.sleep(5)
    p.stop()
    assert.same({ { 1 }, { 2 } }, lines(out))
  end)

  it("resend publishes the message again at the end of its topic with an attempt count", function()
    local path, out = app([[
luka.consumer "c" { topics = { "resend" }, config = config, final_failure = "resend",
  handle = function(msg, meta)
    record(msg.n, meta.offset, meta.attempt, meta.key, meta.headers.origin)
    if meta.attempt == 1 then error("again") end
  end }
]])
    produce("resend", { 1, 2 })
    local p = run(path, out)
    local r = wait_lines(out, 4)
    assert.equal(0, p.stop())
    assert.same({ 1, 0, 1, "k1", "spec" }, r[1])
    assert.same({ 2, 1, 1, "k2", "spec" }, r[2])
    -- Both come back at the end of the topic, same key and headers, attempt 2.
    assert.same({ 1, 2, 2, "k1", "spec" }, r[3])
    assert.same({ 2, 3, 2, "k2", "spec" }, r[4])
  end)

  it("release delivers the same message again in place after the backoff, keeping order", function()
    local path, out = app([[
luka.consumer "c" { topics = { "release" }, config = config, final_failure = "release",
  handle = function(msg, meta)
    record(msg.n, meta.offset, meta.attempt)
    if msg.n == 1 and meta.attempt < 3 then error("not yet") end
  end }
]])
    produce("release", { 1, 2 })
    local p = run(path, out)
    local r = wait_lines(out, 4)
    assert.equal(0, p.stop())
    assert.same({ { 1, 0, 1 }, { 1, 0, 2 }, { 1, 0, 3 }, { 2, 1, 1 } }, r)
  end)
end)

describe("non-retryable failures", function()
  it("sends bad JSON straight to the error channel with the decode position, skipping retries", function()
    local path, out = app([[
luka.consumer "c" { topics = { "decode" }, config = config, error_channel = "decode_dlt",
  retry = { instant = 3, delayed = { initial = "1s" } },
  handle = function(msg) record(msg.n) end }
]])
    H.kcat_produce(broker.bootstrap, "decode", { { key = "bad", value = '{"n": 1,,}' }, '{"n":2}' })
    local p = run(path, out)
    wait_lines(out, 1)
    local d = H.kcat_consume(broker.bootstrap, "decode_dlt", 1, { timeout = 20 })[1]
    assert.equal(0, p.stop())
    assert.same({ { 2 } }, lines(out))
    assert.equal('{"n": 1,,}', d.value)
    assert.equal("1", d.headers["luka-dlt-attempts"])
    assert.truthy(d.headers["luka-dlt-error"]:find("decode error: invalid JSON at line 1, column", 1, true),
      d.headers["luka-dlt-error"])
  end)

  it("skips retries for luka.fatal()", function()
    local path, out = app([[
luka.consumer "c" { topics = { "fatal" }, group = "fatal2", config = config, error_channel = "fatal_dlt",
  retry = { instant = 3 },
  handle = function(msg, meta) record(msg.n, meta.attempt); luka.fatal("permanently bad") end }
]])
    produce("fatal", { 8 })
    local p = run(path, out)
    local d = H.kcat_consume(broker.bootstrap, "fatal_dlt", 1, { timeout = 20 })[1]
    p.stop()
    assert.equal(1, #lines(out), "called once")
    assert.truthy(d.headers["luka-dlt-error"]:find("permanently bad", 1, true))
  end)
end)

describe("deduplication", function()
  it("skips a message whose key was handled, and commits it", function()
    local path, out = app([[
luka.consumer "c" { topics = { "dedup" }, config = config, dedup = { key = "orderId" },
  handle = function(msg, meta) record(msg.orderId, meta.offset) end }
]])
    H.kcat_produce(broker.bootstrap, "dedup", { '{"orderId":"a"}', '{"orderId":"b"}', '{"orderId":"a"}',
      '{"orderId":"c"}' })
    local p = run(path, out, "--log-level debug")
    wait_lines(out, 3)
    H.sleep(1)
    local log = p.output()
    assert.equal(0, p.stop())
    assert.same({ { "a", 0 }, { "b", 1 }, { "c", 3 } }, lines(out))
    assert.truthy(log:find("already handled", 1, true))
  end)

  -- A crash after handling and before the commit: librdkafka commits every
  -- minute here, and kill -9 leaves no time for the commit at shutdown, so
  -- the restarted process gets every message again.
  local crashy = [[
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000,
                 ["auto.commit.interval.ms"] = 60000 }
]]

  it("remembers handled keys across a crash and restart with the sqlite store", function()
    local path, out = app(crashy .. [[
luka.consumer "c" { topics = { "dedup_sqlite" }, config = config,
  dedup = { store = "sqlite:dedup.db" },
  handle = function(msg, meta) record(msg.n, meta.id) end }
]])
    H.kcat_produce(broker.bootstrap, "dedup_sqlite", {
      { value = '{"n":1}', headers = { id = "m-1" } }, { value = '{"n":2}', headers = { id = "m-2" } } })
    local p = run(path, out)
    wait_lines(out, 2)
    p.kill("KILL")
    p.wait()
    H.kcat_produce(broker.bootstrap, "dedup_sqlite", { { value = '{"n":3}', headers = { id = "m-3" } } })
    p = run(path, out, "--log-level debug")
    H.wait_until(function() return select(2, p.output():gsub("already handled", "")) == 2 end, 30,
      "the two replayed messages to be skipped")
    wait_lines(out, 3)
    p.stop()
    assert.same({ { 1, "m-1" }, { 2, "m-2" }, { 3, "m-3" } }, lines(out))
  end)

  it("shares handled keys between two processes of a group through Redis", function()
    local redis = H.redis_start()
    local path, out = app(crashy .. ([[
luka.consumer "c" { topics = { "dedup_redis" }, config = config,
  dedup = { key = "orderId", store = "%s" },
  handle = function(msg) record(msg.orderId, os.getenv("WHO")) end }
]]):format(redis.url))
    local msgs = {}
    for i = 1, 20 do msgs[i] = { key = "k" .. i, value = ('{"orderId":"o-%d"}'):format(i) } end
    H.kcat_produce(broker.bootstrap, "dedup_redis", msgs)
    local function start(who)
      return H.spawn(("%s run %s --brokers %s --log-level debug"):format(H.luka, path, broker.bootstrap),
        { env = { OUT = out, WHO = who } })
    end
    -- The first process handles everything, then crashes before committing;
    -- the second takes its partitions over and gets all of it again.
    local a = start("a")
    wait_lines(out, 20)
    a.kill("KILL")
    a.wait()
    local b = start("b")
    H.wait_until(function() return select(2, b.output():gsub("already handled", "")) == 20 end, 40,
      "the second process to skip all 20")
    b.stop()
    redis.stop()
    local seen = {}
    for _, l in ipairs(lines(out)) do
      assert.is_nil(seen[l[1]], l[1] .. " handled twice")
      seen[l[1]] = true
    end
    assert.equal(20, #lines(out))
  end)
end)
