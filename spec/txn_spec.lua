-- Exactly-once consume -> publish (transactional = true): what the
-- handlers publish and the input offsets commit in one Kafka transaction.
-- Every output is checked by KafkaJS, a client independent of librdkafka,
-- reading read_committed (spec/js/txn_read.js).  The kill -9 scenarios
-- run short here; CHAOS_LONG=1 runs 20,000 messages and more kills.
--
-- The embedded broker is librdkafka 2.0.2's mock cluster, which takes
-- transactional requests but isolates nothing (rdkafka_mock_handlers.c):
-- EndTxn writes no commit or abort marker, Fetch answers a last stable
-- offset equal to the high watermark and no aborted transactions, and a
-- second producer with the same transactional.id gets a new producer id
-- instead of fencing the first.  So against it a read_committed reader
-- sees the outputs of open and aborted transactions too.  What these
-- specs assert is what holds there: nothing lost, offsets committed with
-- the outputs and read back, and every duplicate an output of a
-- transaction that was aborted or cut by the kill (README, "Exactly-once").
local H = require "support.helper"

local LONG = os.getenv("CHAOS_LONG") == "1"
local function size(short, long) return LONG and long or short end
local PARTITIONS = 4
local seed = tonumber(os.getenv("CHAOS_SEED") or "") or os.time()
math.randomseed(seed)

local function check(src)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", 'local luka = require "luka"\n' .. src .. "\n")
  return H.run(("cd %s && %s check app.lua"):format(H.q(dir), H.luka))
end

local function numbered(from, to)
  local msgs = {}
  for n = from, to do msgs[#msgs + 1] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
  return msgs
end

-- KafkaJS reads topic to its end: { n, distinct, dups, values }.
local function read(b, topic, expected, opts)
  opts = opts or {}
  local r = H.node("txn_read.js", { b.bootstrap, topic, tostring(expected), tostring(opts.timeout or 60000),
    opts.uncommitted and "1" or "0" }, { timeout = (opts.timeout or 60000) / 1000 + 30 })
  assert(r.code == 0 and r.lines[1], "txn_read.js failed: " .. r.stderr .. r.stdout)
  return r.lines[1]
end

local function broker(extra)
  local topics = { "in:" .. PARTITIONS, "out:" .. PARTITIONS, "dlq:" .. PARTITIONS }
  for _, t in ipairs(extra or {}) do topics[#topics + 1] = t end
  return H.broker_start { control = true, topics = topics }
end

local function start(b, env)
  local e = { GROUP = "txn", TRANSACTIONAL = "1" }
  for k, v in pairs(env or {}) do e[k] = v end
  return H.spawn(("%s run spec/fixtures/txn.lua --brokers %s"):format(H.luka, b.bootstrap), { env = e })
end

-- The run takes messages (its assignment's offsets were read back).
local function taking(run, env)
  local pattern = (env or {}).TRANSACTIONAL == "0" and "assigned in" or "offsets read back"
  run.wait_output(pattern, 40, "the run to be assigned")
end

describe("transactional = true, checked", function()
  it("refuses transaction options without transactional, dedup with it, and the properties it sets", function()
    local cases = {
      { 'luka.consumer "c" { topics = { "t" }, transaction = { interval = "1s" }, handle = function() end }',
        "app.lua:2: consumer 'c': transaction = { ... } needs transactional = true" },
      { 'luka.consumer "c" { topics = { "t" }, transactional = true, dedup = { key = "id" }, handle = function() end }',
        "app.lua:2: consumer 'c': dedup cannot be combined with transactional = true" },
      { 'luka.consumer "c" { topics = { "t" }, transactional = true, handle_batch = function() end }',
        "app.lua:2: consumer 'c': handle_batch cannot be combined with transactional = true yet" },
      { 'luka.consumer "c" { topics = { "t" }, transactional = true, config = { ["isolation.level"] = "read_uncommitted" }, handle = function() end }',
        "app.lua:2: consumer 'c': config sets isolation.level: luka sets it on a transactional consumer" },
      { 'luka.consumer "c" { topics = { "t" }, transactional = true, transaction = { messages = 0 }, handle = function() end }',
        "consumer 'c': option 'transaction': option 'messages' must be" },
    }
    for _, c in ipairs(cases) do
      local r = check(c[1])
      assert.equal(1, r.code, c[1])
      assert.truthy(r.stderr:find(c[2], 1, true), ("expected %q in %q"):format(c[2], r.stderr))
    end
  end)

  it("has luka check print the transaction, its transactional.id formula and its commits", function()
    local r = check('luka.consumer "c" { topics = { "t" }, group = "g", transactional = true, ' ..
      'transaction = { messages = 50, interval = "1s", instance = "a" }, handle = function() end }')
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("transactional: transactional.id g.c.a, a commit every 50 message(s) or 1000 ms", 1, true),
      r.stdout)
  end)
end)

describe("transactional = true", function()
  it("commits the open transaction at shutdown, with the offsets, and reads them back", function()
    local b = broker()
    H.kcat_produce(b.bootstrap, "in", numbered(1, 200))
    -- A transaction that would stay open for an hour: only the shutdown commits it.
    local run = start(b, { INTERVAL = "1h", MESSAGES = "100000" })
    local u = read(b, "out", 200, { uncommitted = true, timeout = 30000 })
    assert.equal(200, u.n, "the open transaction's outputs were written")
    assert.equal(0, run.stop(20))
    assert.truthy(run.output():find("committing the open transaction (200 message(s))", 1, true), run.output())
    c = read(b, "out", 200)
    assert.same({ 200, 200, 0 }, { c.n, c.distinct, c.dups })
    -- The input offsets went into luka's offsets topic in the same commit,
    -- as the next offset to read (last done + 1) of each partition.
    local recs = H.kcat_consume(b.bootstrap, "__luka_offsets", nil, { args = "-X isolation.level=read_committed" })
    local sum = 0
    for _, rec in ipairs(recs) do
      assert.truthy(rec.key:match("^in/%d/txn$"), rec.key)
      sum = sum + tonumber(rec.value)
    end
    assert.equal(200, sum, "the offsets sum to the messages read")
    -- luka lag reads them there (the mock never stores a transaction's
    -- offsets for the group): every partition read to its end.
    local lag = H.run(("TRANSACTIONAL=1 %s lag spec/fixtures/txn.lua --brokers %s --json"):format(H.luka, b.bootstrap))
    assert.equal(0, lag.code, lag.stderr)
    assert.truthy(lag.stderr:find("group txn: 4 committed offset(s) read from __luka_offsets", 1, true), lag.stderr)
    local doc = H.json_decode(lag.stdout)
    assert.equal(0, doc.groups[1].lag, lag.stdout)
    assert.equal(4, #doc.groups[1].partitions)
    -- A second run reads the offsets back and handles nothing again.
    run = start(b, {})
    taking(run)
    H.sleep(1)
    assert.equal(0, run.stop(20))
    c = read(b, "out", 200)
    assert.same({ 200, 200, 0 }, { c.n, c.distinct, c.dups })
  end)

  it("aborts a transaction whose commit fails, rewinds and replays it: the only duplicates are its outputs", function()
    local b = broker()
    H.kcat_produce(b.bootstrap, "in", numbered(1, 500))
    -- The first EndTxn (a commit) fails with an error that makes librdkafka
    -- abort the transaction.
    assert.equal("ok", b.control("fail EndTxn 1 UNKNOWN_PRODUCER_ID"))
    local run = start(b, { MESSAGES = "100" })
    local c = read(b, "out", 500)
    assert.equal(0, run.stop(20))
    local out = run.output()
    assert.truthy(out:find("aborting and replaying", 1, true), out)
    local aborted = tonumber(out:match("transaction aborted: its (%d+) message%(s%) are delivered again"))
    assert.truthy(aborted, out)
    -- Every input came out; the aborted transaction's outputs were written
    -- and replayed, and only those show twice (the mock hides no aborted
    -- output from a read_committed reader; a real cluster does).
    assert.equal(500, c.distinct)
    assert.equal(aborted, c.dups, H.json_encode(c))
    assert.equal(500 + aborted, c.n)
  end)

  it("stops the endpoint cleanly when fenced, and a second instance with the same id goes on", function()
    local b = broker()
    H.kcat_produce(b.bootstrap, "in", numbered(1, 3000))
    local a = start(b, { INSTANCE = "same", SPIN_MS = "2" })
    taking(a)
    -- The mock gives a second producer with the same transactional.id a new
    -- producer id instead of fencing the first, so the broker's answer to a
    -- fenced producer is injected: its next commit gets PRODUCER_FENCED.
    assert.equal("ok", b.control("fail EndTxn 1 PRODUCER_FENCED"))
    assert.equal(3, a.wait(40), a.output())
    local out = a.output()
    assert.truthy(out:find("of transactional.id txn.c.same: .*the endpoint stops, its open transaction uncommitted"), out)
    assert.truthy(out:find("left group txn", 1, true), out)
    local second = start(b, { INSTANCE = "same" })
    local c = read(b, "out", 3000, { timeout = 90000 })
    assert.equal(0, second.stop(20))
    assert.equal(3000, c.distinct, "nothing lost")
  end)
end)

-- kill -9 at random moments while it consumes, restarting each time; a
-- final run finishes.  Returns the reads of out and dlq.
local function killed(name, env, n, kills, faults)
  local b = broker()
  H.kcat_produce(b.bootstrap, "in", numbered(1, n), { timeout = 120 })
  local runs = {}
  for _ = 1, kills do
    local run = start(b, env)
    runs[#runs + 1] = run
    taking(run, env)
    if faults then assert.equal("ok", b.control(faults)) end
    H.sleep(0.2 + math.random() * 1.2)
    assert.is_true(run.kill("KILL"))
    assert.equal(137, run.wait(10))
  end
  local last = start(b, env)
  local expect = env.FAIL == "1" and n - n // 10 or n
  local out = read(b, "out", expect, { timeout = 120000 })
  local dlq = env.FAIL == "1" and read(b, "dlq", n // 10, { timeout = 10000 }) or nil
  assert.equal(0, last.stop(20), last.output())
  io.stderr:write(("\n[txn %s] %d messages, %d kill -9 (seed %d): out %d, distinct %d, duplicates %d%s\n")
    :format(name, n, kills, seed, out.n, out.distinct, out.dups,
      dlq and (", dlq %d, duplicates %d"):format(dlq.n, dlq.dups) or ""))
  local report = os.getenv("CHAOS_REPORT")
  if report then
    local f = io.open(report, "a")
    f:write(H.json_encode({ scenario = "txn " .. name, messages = n, kills = kills, seed = seed, out = out.n,
      what = ("%d kill -9 at random moments, restarting each time"):format(kills),
      note = ("seed %d; read_committed by KafkaJS"):format(seed),
      distinct = out.distinct, duplicates = out.dups, lost = expect - out.distinct }), "\n")
    f:close()
  end
  return out, dlq, expect, b
end

-- Why "0 duplicates to a read_committed reader" is not asserted here: the
-- embedded broker does not isolate transactions.  Shown by
-- confluent-kafka-python, a client other than luka: should a later
-- librdkafka's mock hide aborted and open transactions, this fails, and the
-- kill -9 scenarios below can be tightened to 0 duplicates.
describe("the embedded broker and transactions", function()
  it("shows a read_committed reader the outputs of aborted and open transactions too", function()
    local b = H.broker_start { topics = { "probe:1" } }
    local r = H.run(("%s spec/support/txn_probe.py %s probe"):format(H.PY, b.bootstrap),
      { timeout = 60 })
    assert(r.code == 0, "txn_probe.py failed: " .. r.stderr)
    local got = H.json_decode(r.stdout)
    assert.same({ "committed", "aborted", "open" }, got.read_uncommitted)
    assert.same({ "committed", "aborted", "open" }, got.read_committed)
    assert.equal(3, got.high) -- no offset taken by commit or abort markers
  end)
end)

describe("transactional through kill -9", function()
  local N, KILLS = size(3000, 20000), size(2, 8)
  -- A transaction holds at most TXN messages; on the mock a kill leaves at
  -- most the outputs of one open transaction readable, which the next run
  -- replays: at most TXN duplicates per kill.  (Without the offsets read
  -- back from __luka_offsets every kill would replay the whole topic.)
  local TXN = 200

  it("kill -9 repeatedly: none lost, duplicates only from transactions the kills cut", function()
    local out, _, expect = killed("transactional", { SPIN_MS = "1", MESSAGES = tostring(TXN) }, N, KILLS)
    assert.equal(expect, out.distinct, "lost outputs")
    assert(out.dups <= KILLS * TXN, ("%d duplicates, more than %d kills × %d"):format(out.dups, KILLS, TXN))
  end)

  it("the same with an error channel and final_failure = resend in play", function()
    local out, dlq, expect = killed("transactional, resend + error channel",
      { SPIN_MS = "1", FAIL = "1", MESSAGES = tostring(TXN) }, N, KILLS)
    assert.equal(expect, out.distinct, "lost outputs")
    assert.equal(N // 10, dlq.distinct, "lost dead letters")
    assert(out.dups + dlq.dups <= KILLS * TXN, ("%d duplicates"):format(out.dups + dlq.dups))
  end)

  it("the same under injected NOT_LEADER_FOR_PARTITION on Produce", function()
    local out, _, expect = killed("transactional, Produce NOT_LEADER_FOR_PARTITION",
      { SPIN_MS = "1", MESSAGES = tostring(TXN) }, N, KILLS, "fail Produce 20 NOT_LEADER_FOR_PARTITION")
    assert.equal(expect, out.distinct, "lost outputs")
    assert(out.dups <= KILLS * TXN, ("%d duplicates"):format(out.dups))
  end)

  it("without transactional (at-least-once) nothing is lost, and duplicates are counted", function()
    local out, _, expect = killed("at-least-once", { SPIN_MS = "1", TRANSACTIONAL = "0" }, N, KILLS)
    assert.equal(expect, out.distinct, "lost outputs")
  end)
end)
