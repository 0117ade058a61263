-- Chaos: luka loses no message when it is killed, restarted, rebalanced,
-- cut off from its brokers, fed protocol errors, moved to another
-- coordinator, stuck in a handler, or kept from publishing.  Each scenario
-- runs `luka broker` in a process of its own, produces uniquely numbered
-- messages keyed over several partitions, runs spec/fixtures/chaos.lua
-- (which appends "N TIME" for each handled message), injects the fault, and
-- checks at the end that every number was handled at least once and that
-- each partition's low watermark is still 0 (retention hid nothing).
-- Duplicates are counted, printed, and bounded where the design bounds them.
--
-- `make test` runs the short versions; scripts/chaos (make chaos) sets
-- CHAOS_LONG=1 for more messages and more kills.  CHAOS_SEED fixes the
-- random kill moments; CHAOS_REPORT names a file that gets one JSON line
-- per scenario with its figures.
local H = require "support.helper"
local system = require "system"

local LONG = os.getenv("CHAOS_LONG") == "1"
local function size(short, long) return LONG and long or short end

local PARTITIONS = size(8, 16)
-- luka stores a message's offset once it is done, and librdkafka commits
-- stored offsets every auto.commit.interval.ms (1 s, set by luka).  A
-- message handled more than that before a crash was committed; one more
-- second covers the commit's round trip and a busy machine.
local COMMIT_INTERVAL = 1.0
local WINDOW = COMMIT_INTERVAL + 1.0

local seed = tonumber(os.getenv("CHAOS_SEED") or "") or os.time()
math.randomseed(seed)

local function now() return system.gettime() end

-- "1-3, 7, 9-12" for a sorted list of numbers, cut after limit ranges.
local function ranges(list, limit)
  local out, i = {}, 1
  while i <= #list do
    local j = i
    while j < #list and list[j + 1] <= list[j] + 1 do j = j + 1 end
    out[#out + 1] = list[i] == list[j] and tostring(list[i]) or (list[i] .. "-" .. list[j])
    i = j + 1
    if #out == (limit or 20) and i <= #list then
      out[#out + 1] = ("... (%d more)"):format(#list - i + 1)
      break
    end
  end
  return #out > 0 and table.concat(out, ", ") or "none"
end

local function numbered(from, to)
  local msgs = {}
  for n = from, to do msgs[#msgs + 1] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
  return msgs
end

-- { [partition] = offset } from kcat -Q; -2 asks for the low watermark
-- (the first offset still kept), -1 for the high one.
local function watermarks(bootstrap, topic, partitions, which)
  local args = {}
  for p = 0, partitions - 1 do args[#args + 1] = "-t " .. H.q(("%s:%d:%d"):format(topic, p, which)) end
  local r = H.run(("kcat -Q -b %s %s"):format(H.q(bootstrap), table.concat(args, " ")), { timeout = 30 })
  assert(r.code == 0, "kcat -Q failed: " .. r.stderr)
  local marks = {}
  for p, off in r.stdout:gmatch("%[(%d+)%] offset (%-?%d+)") do marks[tonumber(p)] = tonumber(off) end
  return marks
end

-- ---------------------------------------------------------------------
-- A scenario: its own broker, a topic "in" of numbered messages, the luka
-- runs that read it, and what they handled.

local Scenario = {}
Scenario.__index = Scenario

-- opts: messages, brokers, topics (more "name:partitions"), group.
local function scenario(name, opts)
  local s = setmetatable({ name = name, n = opts.messages, runs = {}, dir = H.tmpdir(),
    group = opts.group or ("chaos-" .. name:gsub("%W+", "-")) }, Scenario)
  local topics = { "in:" .. PARTITIONS }
  for _, t in ipairs(opts.topics or {}) do topics[#topics + 1] = t end
  s.broker = H.broker_start { control = true, brokers = opts.brokers, topics = topics }
  H.kcat_produce(s.broker.bootstrap, "in", numbered(1, s.n), { timeout = 120 })
  return s
end

-- Starts a luka run of the chaos fixture; env adds to TOPIC, GROUP, OUT.
function Scenario:start(env)
  local run = { index = #self.runs + 1 }
  run.out = ("%s/run%d.out"):format(self.dir, run.index)
  local e = { TOPIC = "in", GROUP = self.group, OUT = run.out }
  for k, v in pairs(env or {}) do e[k] = v end
  run.proc = H.spawn(("%s run spec/fixtures/chaos.lua --brokers %s"):format(H.luka, self.broker.bootstrap),
    { env = e })
  self.runs[run.index] = run
  return run
end

function Scenario:lines(run) return H.read_lines(run.out) end

-- Waits until run has handled at least n messages (default 1).
function Scenario:handling(run, n, timeout)
  H.wait_until(function() return #self:lines(run) >= (n or 1) end, timeout or 40,
    ("run %d of %s to handle %d message(s)"):format(run.index, self.name, n or 1), 0.02)
end

-- Kills run with sig and waits for it; the kill time is kept.
function Scenario:kill(run, sig)
  run.proc.kill(sig)
  run.killed_at = now()
  run.signal = sig
  run.code = run.proc.wait(30)
  return run.code
end

function Scenario:control(cmd)
  local reply = self.broker.control(cmd)
  assert(reply == "ok", ("broker control '%s': %s"):format(cmd, reply))
end

-- Every handling so far: { n, t, run }, in time order.
function Scenario:handlings()
  local list = {}
  for i, run in ipairs(self.runs) do
    for _, line in ipairs(self:lines(run)) do
      local n, t = line:match("^(%d+) ([%d.]+)$")
      if n then list[#list + 1] = { n = tonumber(n), t = tonumber(t), run = i } end
    end
  end
  table.sort(list, function(a, b) return a.t < b.t end)
  return list
end

function Scenario:distinct()
  local seen, count = {}, 0
  for _, run in ipairs(self.runs) do
    for _, line in ipairs(self:lines(run)) do
      local n = tonumber(line:match("^(%d+) "))
      if n and not seen[n] then seen[n], count = true, count + 1 end
    end
  end
  return count
end

-- Waits until every number was handled by some run.
function Scenario:wait_all(timeout)
  H.wait_until(function()
    local d = self:distinct()
    assert(d >= self.n, ("%d of %d handled"):format(d, self.n))
    return true
  end, timeout or size(120, 400), ("every message of %s to be handled"):format(self.name), 0.25)
end

-- The group's committed offsets of "in", read with KafkaJS (a client
-- independent of librdkafka): { [partition] = offset }, -1 for none.
function Scenario:committed()
  local js = [[
const { Kafka, logLevel } = require("kafkajs");
const [b, group, topic] = process.argv.slice(1);
(async () => {
  const admin = new Kafka({ brokers: b.split(","), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const r = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  console.log(JSON.stringify(r[0].partitions.map(p => [p.partition, Number(p.offset)])));
  await admin.disconnect();
})().catch(e => { console.error(e.message); process.exit(1); });
]]
  local r = H.run(("cd %s/spec/js && node -e %s %s %s in"):format(H.q(H.root), H.q(js),
    H.q(self.broker.bootstrap), H.q(self.group)), { timeout = 30 })
  assert(r.code == 0, "fetching committed offsets: " .. r.stderr)
  local out = {}
  for _, pair in ipairs(H.json_decode(r.stdout)) do out[pair[1]] = pair[2] end
  return out
end

-- Stops every run still going with SIGTERM, which must exit 0.
-- Whether the group's committed offset of every partition is its end.
function Scenario:all_committed(high)
  local committed = self:committed()
  for p = 0, PARTITIONS - 1 do
    if committed[p] ~= high[p] then return false end
  end
  return true
end

-- Stops every run still going with SIGTERM, which must exit 0.  The last
-- one is stopped only once the group has committed every partition to its
-- end, because it may still be handling messages again that every number
-- was already seen in:
--  - after others left: the mock cluster of librdkafka 2.0.2 rejects
--    OffsetCommit with REBALANCE_IN_PROGRESS while its group is joining,
--    where Kafka accepts a commit from the current generation until the
--    rebalance completes (KAFKA-8487), so the commits of the others' last
--    moments fail and the survivor handles those messages again;
--  - after an outage longer than the session timeout: what was handled
--    from the prefetch queue while the brokers were down could not be
--    committed, and is handled again once the group is joined again.
-- A luka that never commits everything fails here after 60 s.
function Scenario:stop_runs(high)
  local alive = {}
  for _, run in ipairs(self.runs) do
    if run.proc.alive() then alive[#alive + 1] = run end
  end
  for i, run in ipairs(alive) do
    if i == #alive then
      H.wait_until(function() return self:all_committed(high) end, 60,
        ("run %d of %s to commit every partition"):format(run.index, self.name), 1)
    end
    assert.equal(0, self:kill(run, "TERM"), "exit code after SIGTERM")
  end
end

-- The figures: handled, lost and duplicated numbers, and the first handling
-- of each duplicated number.  Stops the runs, then asserts that retention
-- dropped nothing (low watermark 0 on every partition, all produced) and
-- that the group committed every partition to its end: nothing is left to
-- redeliver and no stale commit moved an offset back.
function Scenario:finish()
  local high = watermarks(self.broker.bootstrap, "in", PARTITIONS, -1)
  self:stop_runs(high)
  local r = { count = {}, first = {}, lost = {}, dups = {}, handled = 0, duplicates = 0 }
  for _, h in ipairs(self:handlings()) do
    r.count[h.n] = (r.count[h.n] or 0) + 1
    r.first[h.n] = r.first[h.n] or h
    r.handled = r.handled + 1
  end
  for n = 1, self.n do
    local c = r.count[n] or 0
    if c == 0 then r.lost[#r.lost + 1] = n end
    if c > 1 then
      r.dups[#r.dups + 1] = n
      r.duplicates = r.duplicates + c - 1
    end
  end
  local low = watermarks(self.broker.bootstrap, "in", PARTITIONS, -2)
  local committed = self:committed()
  local total = 0
  for p = 0, PARTITIONS - 1 do
    assert.equal(0, low[p], ("low watermark of in[%d] (retention dropped messages)"):format(p))
    total = total + assert(high[p], "no high watermark for in[" .. p .. "]")
    assert.equal(high[p], committed[p], ("committed offset of in[%d] after the last run stopped"):format(p))
  end
  assert.equal(self.n, total, "messages in the topic")
  return r
end

-- Prints the figures, appends them to $CHAOS_REPORT, and asserts no loss.
function Scenario:report(r, what, extra)
  local line = ("chaos: %s: %d messages, %d handlings, %d lost, %d duplicates%s%s"):format(self.name,
    self.n, r.handled, #r.lost, r.duplicates, #r.dups > 0 and (" (" .. ranges(r.dups) .. ")") or "",
    extra and ("; " .. extra) or "")
  print(line)
  local path = os.getenv("CHAOS_REPORT")
  if path then
    local f = assert(io.open(path, "a"))
    f:write(H.json_encode({ scenario = self.name, what = what, messages = self.n, lost = #r.lost,
      duplicates = r.duplicates, note = extra, seed = seed, long = LONG }), "\n")
    f:close()
  end
  assert(#r.lost == 0, ("%s lost %d message(s): %s"):format(self.name, #r.lost, ranges(r.lost)))
  self.broker.stop()
end

-- Duplicates whose first handling came before `since` minus the commit
-- window: they had been committed, or should have been.
function Scenario:stale_duplicates(r, since)
  local bad = {}
  for _, n in ipairs(r.dups) do
    if r.first[n].t < since - WINDOW then bad[#bad + 1] = n end
  end
  return bad
end

-- The times (epoch seconds, as luka.now) at which run logged a revoke.
local utc_offset = os.time() - os.time(os.date("!*t"))
function Scenario:revokes(run)
  local times = {}
  for y, mo, d, h, mi, sec, frac in run.proc.output():gmatch(
      "(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)(%.%d+)Z [^\n]- revoked ") do
    times[#times + 1] = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
      hour = tonumber(h), min = tonumber(mi), sec = tonumber(sec) }) + utc_offset + tonumber(frac)
  end
  return times
end

-- Whether the run that first handled n logged a revoke at most lead
-- seconds after that handling (or at most lag seconds before it, while the
-- revoke waited for running handlers): the mock refused the commits of
-- that stretch (see stop_runs), so n came again.
function Scenario:revoked_after(r, n, lead, lag)
  local h = r.first[n]
  for _, t in ipairs(self:revokes(self.runs[h.run])) do
    if h.t >= t - lead and h.t <= t + lag then return true end
  end
  return false
end

-- The log lines of a run that match any of the Lua patterns, joined.
local function log_lines(run, ...)
  local out = {}
  for line in run.proc.output():gmatch("[^\n]+") do
    for _, pattern in ipairs({ ... }) do
      if line:match(pattern) then
        out[#out + 1] = line
        break
      end
    end
  end
  return table.concat(out, "\n")
end

-- ---------------------------------------------------------------------

describe("chaos", function()
  it("a clean run handles every message exactly once", function()
    local s = scenario("clean run", { messages = size(5000, 200000) })
    local run = s:start()
    s:wait_all()
    H.sleep(1.5) -- anything handled twice would show now
    local r = s:finish()
    s:report(r, "one luka, no fault")
    assert.equal(0, r.duplicates, "duplicates: " .. ranges(r.dups))
    assert.equal(0, run.code)
  end)

  -- kill -9 at random moments, restarting each time: each duplicate was
  -- first handled by a run that was then killed, at most WINDOW seconds
  -- before the kill.
  local function kill_at_random(name, env)
    local kills = size(3, 10)
    local s = scenario(name, { messages = size(6000, 60000) })
    for _ = 1, kills do
      local run = s:start(env)
      s:handling(run)
      H.sleep(math.random() * 2)
      assert.equal(137, s:kill(run, "KILL"))
    end
    s:start(env)
    s:wait_all()
    local r = s:finish()
    local bad, worst = {}, 0
    for _, n in ipairs(r.dups) do
      local h = r.first[n]
      local killed = s.runs[h.run].killed_at
      local age = killed and killed - h.t or math.huge
      worst = math.max(worst, age)
      if age > WINDOW then bad[#bad + 1] = n end
    end
    s:report(r, ("%d kill -9 at random moments, restarting each time%s"):format(kills,
      env.CONCURRENCY and (", concurrency " .. env.CONCURRENCY) or ""),
      ("%d kills, oldest replayed handling %.2f s before its kill (seed %d)"):format(kills, worst, seed))
    assert(#bad == 0, ("%d duplicate(s) first handled more than %.1f s before the kill: %s"):format(
      #bad, WINDOW, ranges(bad)))
  end

  it("kill -9 at random moments replays only what was handled within the commit interval", function()
    kill_at_random("kill -9", { SPIN_MS = "0.5" })
  end)

  it("kill -9 at random moments with 64 handlers waiting on I/O at once: the same bound", function()
    -- 100 ms waits: 640 messages a second at most, so the stream lasts
    -- past the kills.
    kill_at_random("kill -9, concurrency 64", { CONCURRENCY = "64", WAIT_MS = "100" })
  end)

  it("kill -9 replays at most the commit interval even when handlers are slow", function()
    -- 20 ms per message: the replay window must still be the commit
    -- interval, not a multiple of the handler time.
    local s = scenario("kill -9, slow handler", { messages = size(1000, 3000) })
    local run = s:start({ SPIN_MS = "20" })
    s:handling(run)
    H.sleep(size(6, 12))
    assert.equal(137, s:kill(run, "KILL"))
    s:start()
    s:wait_all()
    local r = s:finish()
    local stale = {}
    for _, n in ipairs(r.dups) do
      if run.killed_at - r.first[n].t > WINDOW then stale[#stale + 1] = n end
    end
    s:report(r, "kill -9 with a 20 ms handler", ("%d handled more than %.1f s before the kill came again")
      :format(#stale, WINDOW))
    assert(#stale == 0, ("%d message(s) handled more than %.1f s before the kill were not committed " ..
      "and came again: %s"):format(#stale, WINDOW, ranges(stale)))
  end)

  it("SIGTERM mid-stream commits everything handled, so restarts replay nothing", function()
    local s = scenario("SIGTERM", { messages = size(6000, 30000) })
    for _ = 1, size(2, 5) do
      local run = s:start({ SPIN_MS = "0.5" })
      s:handling(run)
      H.sleep(0.5 + math.random() * 1.5)
      assert.equal(0, s:kill(run, "TERM"), "exit code after SIGTERM")
    end
    s:start()
    s:wait_all()
    H.sleep(1.5)
    local r = s:finish()
    s:report(r, ("SIGTERM mid-stream %d times, restarting each time"):format(size(2, 5)))
    assert.equal(0, r.duplicates, "duplicates: " .. ranges(r.dups))
  end)

  -- A second and a third luka join mid-stream, then leave (SIGTERM).  With
  -- Kafka, commit on revoke leaves no duplicate.  The mock rejects commits
  -- from the moment a member joins or leaves until the group is stable
  -- again (see stop_runs), so what a member handled from its last periodic
  -- commit before that until its revoke comes again.  A duplicate is
  -- explained when the run that first handled it was revoked (it logs
  -- when) at most REBALANCE_LEAD seconds later: the commit interval, the
  -- heartbeat that tells a member of the rebalance (3 s) and a second of
  -- slack; or during the revoke's wait for its running handlers.
  local REBALANCE_LEAD = WINDOW + 3 + 1
  local function join_and_leave(name, env)
    local s = scenario(name, { messages = size(20000, 60000) })
    local a = s:start(env)
    s:handling(a)
    local b = s:start(env)
    s:handling(b)
    local c = s:start(env)
    s:handling(c)
    H.sleep(1)
    local before = #s:lines(a)
    assert.equal(0, s:kill(b, "TERM"))
    assert.equal(0, s:kill(c, "TERM"))
    s:wait_all()
    assert(#s:lines(a) > before, "the first luka took the partitions back")
    local r = s:finish()
    local unexplained = {}
    for _, n in ipairs(r.dups) do
      if not s:revoked_after(r, n, REBALANCE_LEAD, env.CONCURRENCY and 5 or 1) then
        unexplained[#unexplained + 1] = n
      end
    end
    local rejected = 0
    for _, run in ipairs({ a, b, c }) do
      rejected = rejected + select(2, run.proc.output():gsub("commit on revoke: Broker: Group rebalance in progress", ""))
    end
    s:report(r, "a second and a third luka join mid-stream, then leave (SIGTERM)" ..
      (env.CONCURRENCY and (", concurrency " .. env.CONCURRENCY) or ""),
      ("handled by the three: %d, %d, %d; %d commit(s) on revoke rejected by the mock with " ..
        "REBALANCE_IN_PROGRESS"):format(#s:lines(a), #s:lines(b), #s:lines(c), rejected))
    assert(#unexplained == 0, "duplicates first handled outside any revoke of their run: " .. ranges(unexplained))
  end

  it("a second and third luka join the group mid-stream and leave again, losing nothing", function()
    join_and_leave("join and leave", { SPIN_MS = "1" })
  end)

  it("luka with 64 handlers in flight joins and leaves mid-stream, losing nothing", function()
    -- 100 ms waits keep the stream going (at most 640 messages a second
    -- per luka) until after the second and third have left.
    join_and_leave("join and leave, concurrency 64", { CONCURRENCY = "64", WAIT_MS = "100" })
  end)

  it("all brokers down for 10 s mid-stream: luka carries on when they return", function()
    local s = scenario("all brokers down", { messages = size(15000, 60000) })
    local run = s:start({ SPIN_MS = "1" })
    s:handling(run)
    H.sleep(3)
    local down = now()
    s:control("down all")
    H.sleep(10)
    s:control("up all")
    s:wait_all()
    assert.is_true(run.proc.alive(), "luka kept running")
    local r = s:finish()
    local stale = s:stale_duplicates(r, down)
    s:report(r, "every broker down for 10 s mid-stream, luka not restarted",
      ("%d handled during the outage"):format((function()
        local k = 0
        for _, h in ipairs(s:handlings()) do if h.t >= down and h.t <= down + 10 then k = k + 1 end end
        return k
      end)()))
    assert(#stale == 0, "duplicates handled well before the outage: " .. ranges(stale))
  end)

  it("transport and REBALANCE_IN_PROGRESS errors on Fetch and OffsetCommit lose nothing", function()
    local s = scenario("injected errors", { messages = size(10000, 50000) })
    local run = s:start({ SPIN_MS = "0.5" })
    s:handling(run)
    local first = now()
    for _, cmd in ipairs({ "fail Fetch 5 TRANSPORT", "fail OffsetCommit 3 REBALANCE_IN_PROGRESS",
      "fail Fetch 5 REBALANCE_IN_PROGRESS", "fail OffsetCommit 3 TRANSPORT",
      "fail Heartbeat 2 REBALANCE_IN_PROGRESS" }) do
      H.sleep(1)
      s:control(cmd)
    end
    s:wait_all()
    local r = s:finish()
    local stale = s:stale_duplicates(r, first)
    s:report(r, "Fetch ×5 TRANSPORT, OffsetCommit ×3 REBALANCE_IN_PROGRESS, Fetch ×5 " ..
      "REBALANCE_IN_PROGRESS, OffsetCommit ×3 TRANSPORT, Heartbeat ×2 REBALANCE_IN_PROGRESS")
    assert(#stale == 0, "duplicates handled well before the first error: " .. ranges(stale))
  end)

  it("the group coordinator moves mid-stream", function()
    local s = scenario("coordinator moved", { messages = size(10000, 50000), brokers = 3 })
    local run = s:start({ SPIN_MS = "0.5" })
    s:handling(run)
    local first = now()
    H.sleep(1)
    s:control("coordinator group " .. s.group .. " 2")
    H.sleep(2)
    s:control("coordinator group " .. s.group .. " 3")
    s:wait_all()
    local r = s:finish()
    local stale = s:stale_duplicates(r, first)
    s:report(r, "coordinator moved to broker 2, then 3 (of 3)")
    assert(#stale == 0, "duplicates handled well before the move: " .. ranges(stale))
  end)

  it("a handler slower than max.poll.interval.ms: the group recovers, no stale commit, no loss", function()
    local s = scenario("handler past max.poll.interval.ms", { messages = size(4000, 20000) })
    local slow = math.floor(s.n / 4)
    local env = { SPIN_MS = "1", MAX_POLL = "7000", SLOW_N = tostring(slow), SLOW_S = "9",
      SLOW_MARK = s.dir .. "/slow-mark" }
    s:start(env)
    s:start(env)
    H.wait_until(function() return H.read_file(env.SLOW_MARK) end, 60, "the slow message")
    local stuck = now()
    s:wait_all()
    -- The stuck run left the group when max.poll.interval.ms passed, and
    -- joined again once its handler returned.
    local function handled_by(run)
      for _, line in ipairs(s:lines(run)) do
        if tonumber(line:match("^(%d+) ")) == slow then return true end
      end
    end
    local stuck_run
    H.wait_until(function()
      for _, run in ipairs(s.runs) do
        if handled_by(run) and run.proc.output():find("maximum poll interval", 1, true) then
          stuck_run = run
          return select(2, run.proc.output():gsub("%] assigned ", "")) >= 2
        end
      end
    end, 30, "the stuck run to leave the group and be assigned partitions again")
    local rejected = log_lines(stuck_run, "COMMITFAIL")
    local r = s:finish()
    -- Stale: handled well before the stuck handler, and not explained by
    -- a revoke of its run (the two runs' first rebalance, when the second
    -- joins, replays what the first did since its last accepted commit).
    local stale = {}
    for _, n in ipairs(s:stale_duplicates(r, stuck)) do
      if not s:revoked_after(r, n, REBALANCE_LEAD, 1) then stale[#stale + 1] = n end
    end
    s:report(r, "one handler blocks 9 s, max.poll.interval.ms 7 s, two luka in the group",
      ("message %d handled %d times; the stuck run's late commit %s"):format(slow, r.count[slow] or 0,
        rejected:find("Unknown member", 1, true) and "was refused (UNKNOWN_MEMBER_ID)" or "was not attempted"))
    assert(#stale == 0, "duplicates handled well before the stuck handler: " .. ranges(stale))
  end)

  it("a publish path whose broker refuses writes commits no input before its output is acked", function()
    local s = scenario("publish outage", { messages = size(12000, 40000), brokers = 3, topics = { "out:4" } })
    -- Input and group on broker 1, every output partition on broker 3.
    for p = 0, PARTITIONS - 1 do s:control(("leader in %d 1"):format(p)) end
    for p = 0, 3 do s:control(("leader out %d 3"):format(p)) end
    s:control("coordinator group " .. s.group .. " 1")
    local env = { SPIN_MS = "1", PUBLISH = "out" }
    local a = s:start(env)
    s:handling(a)
    H.sleep(2)
    local refused = now()
    s:control("fail Produce 20 NOT_LEADER_FOR_PARTITION")
    H.sleep(3)
    local down = now()
    s:control("down 3")
    H.sleep(3)
    -- Outputs of everything handled since the outage are unacknowledged:
    -- a crash now must leave their inputs uncommitted.
    assert.equal(137, s:kill(a, "KILL"))
    local in_outage = 0
    for _, h in ipairs(s:handlings()) do if h.t >= down then in_outage = in_outage + 1 end end
    s:control("up 3")
    s:start({ PUBLISH = "out" })
    s:wait_all()
    local seen, outputs, missing = {}, 0, {}
    local ok, err = pcall(H.wait_until, function()
      local records = H.kcat_consume(s.broker.bootstrap, "out", nil, { timeout = 30 })
      seen, outputs, missing = {}, #records, {}
      for _, rec in ipairs(records) do seen[tonumber(rec.value:match("%d+"))] = true end
      for n = 1, s.n do if not seen[n] then missing[#missing + 1] = n end end
      assert(#missing == 0, ("%d of %d numbers missing from %d outputs: %s"):format(#missing, s.n,
        outputs, ranges(missing)))
      return true
    end, 60, "every number in the output topic", 1)
    if not ok then
      -- Where each missing number was handled, relative to the faults.
      local where = {}
      for _, h in ipairs(s:handlings()) do
        for _, n in ipairs(missing) do
          if h.n == n then
            where[#where + 1] = ("%d handled by run %d at refused%+.2f s, down%+.2f s"):format(n, h.run,
              h.t - refused, h.t - down)
          end
        end
      end
      error(("%s\n%s\nkilled at down%+.2f s\nrun 1:\n%s\nrun 2:\n%s"):format(err, table.concat(where, "\n"),
        a.killed_at - down, log_lines(a, " error ", " warn "), log_lines(s.runs[2], " error ", " warn ")))
    end
    local r = s:finish()
    local stale = s:stale_duplicates(r, refused)
    s:report(r, "Produce ×20 NOT_LEADER_FOR_PARTITION, then the output topic's broker down, " ..
      "kill -9 during the outage, broker up, restart",
      ("%d handled during the outage; %d outputs for %d inputs, none missing"):format(in_outage, outputs, s.n))
    assert(#missing == 0, "inputs without an output: " .. ranges(missing))
    assert(#stale == 0, "duplicates handled well before Produce failed: " .. ranges(stale))
  end)
end)
