-- `luka replay` puts an error channel's dead letters back on the topics
-- they came from, without the luka-dlt-* headers, once each: its progress
-- is committed in a group of its own once the broker acknowledged what it
-- published.  `luka offsets` moves a group's committed offsets, printing
-- the plan unless --execute, and refuses while the group has members.
--
-- What was handled is counted from the handler's own output file, what was
-- published and committed with kcat and KafkaJS (clients independent of
-- luka's code paths).
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { topics = { "rp_orders:3", "rp_orders_dlt:2", "rp_other:2",
    "rp_mixed_dlt:1", "off_orders:2",
    "rp_crash_dlt:1", "rp_crash_out:2" } }
end)

teardown(function() broker.stop() end)

local function env(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = ("%s=%s"):format(k, H.q(v)) end
  table.sort(parts)
  return table.concat(parts, " ") .. " "
end

-- Runs luka with args (a string) and the fixture's environment.
local function luka(args, e)
  return H.run(("%s%s %s"):format(env(e), H.q(H.luka), args), { timeout = 120 })
end

local function run_app(e)
  return H.spawn(("%s run spec/fixtures/replay.lua --brokers %s"):format(H.q(H.luka), H.q(broker.bootstrap)),
    { env = e })
end

local function messages(prefix, n)
  local out = {}
  for i = 1, n do
    out[i] = { key = prefix .. i, value = ('{"n":%d}'):format(i), headers = { id = prefix .. "-id-" .. i } }
  end
  return out
end

-- The group's committed offsets, per KafkaJS: {partition = offset}.
local function committed(group, topic)
  local r = H.node("groups.js", { broker.bootstrap, group, topic })
  assert(r.code == 0 and r.lines[1], r.stderr)
  return r.lines[1].offsets[topic], r.lines[1].ends[topic]
end

describe("luka replay", function()
  local dir, e

  setup(function()
    dir = H.tmpdir()
    e = { OUT = dir .. "/handled.jsonl", TOPIC = "rp_orders", GROUP = "rp_orders", DLT = "rp_orders_dlt" }
    -- A handler that fails every message: all 100 go to the error channel.
    H.kcat_produce(broker.bootstrap, "rp_orders", messages("o", 100))
    local f = { FAIL = "1" }
    for k, v in pairs(e) do f[k] = v end
    local failing = run_app(f)
    H.wait_until(function()
      local recs = H.kcat_consume(broker.bootstrap, "rp_orders_dlt", nil)
      return #recs >= 100
    end, 60, "100 dead letters")
    assert.equal(0, failing.stop())
    assert.equal(0, #H.read_lines(e.OUT))
  end)

  it("replays the 100 dead letters after the handler is fixed: all handled once, and a second run replays none", function()
    -- The fixed handler runs; nothing is left on the topic for it yet.
    local fixed = run_app(e)
    fixed.wait_output("assigned", 30)
    local r = luka(("replay spec/fixtures/replay.lua --from rp_orders_dlt --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("replayed 100 message(s) from rp_orders_dlt; filtered out 0; skipped 0", 1, true), r.stdout)
    assert.truthy(r.stdout:find("progress committed in group luka-replay.rp_orders_dlt", 1, true), r.stdout)

    local handled = H.wait_jsonl(e.OUT, 100, "100 handled messages", 60)
    -- Nothing more comes: wait until the app's group has committed up to
    -- the end of its topic, then count again.
    H.wait_until(function()
      local offs, ends = committed("rp_orders", "rp_orders")
      for p, high in pairs(ends) do if offs[p] ~= high then return false end end
      return true
    end, 30, "the app's group committed up to the end of rp_orders")
    handled = H.jsonl(e.OUT)
    assert.equal(100, #handled)
    local seen = {}
    for _, h in ipairs(handled) do
      assert.is_nil(seen[h.n], "message " .. h.n .. " handled twice")
      seen[h.n] = true
      -- Key and message id came back as they were.
      assert.equal("o" .. h.n, h.key)
      assert.equal("o-id-" .. h.n, h.id)
    end
    for n = 1, 100 do assert.truthy(seen[n], "message " .. n .. " never handled") end

    -- The republished copies carry no dead-letter header, and sit in the
    -- partition their originals came from.
    local all = H.kcat_consume(broker.bootstrap, "rp_orders", nil)
    assert.equal(200, #all)
    for _, rec in ipairs(all) do
      for name in pairs(rec.headers) do assert.is_nil(name:find("^luka%-dlt%-"), name) end
    end
    local copies, by_key = 0, {}
    for _, rec in ipairs(all) do
      by_key[rec.key] = by_key[rec.key] or {}
      table.insert(by_key[rec.key], rec.partition)
    end
    for key, parts in pairs(by_key) do
      assert.equal(2, #parts, key)
      assert.equal(parts[1], parts[2], key)
      copies = copies + 1
    end
    assert.equal(100, copies)

    -- The replay group committed the DLT's end, per KafkaJS.
    local offs, ends = committed("luka-replay.rp_orders_dlt", "rp_orders_dlt")
    for p, high in pairs(ends) do assert.equal(high, offs[p]) end

    local again = luka(("replay spec/fixtures/replay.lua --from rp_orders_dlt --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(0, again.code, again.stderr)
    assert.truthy(again.stdout:find("replayed 0 message(s)", 1, true), again.stdout)
    assert.equal(200, #H.kcat_consume(broker.bootstrap, "rp_orders", nil))
    assert.equal(0, fixed.stop())
    assert.equal(100, #H.jsonl(e.OUT))
  end)

  it("--dry-run prints what it would replay and publishes and commits nothing", function()
    local r = luka(("replay spec/fixtures/replay.lua --from rp_orders_dlt --group rp-dry --dry-run --limit 5 --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(0, r.code, r.stderr)
    local lines = 0
    for line in r.stdout:gmatch("[^\n]+") do
      if line:match("^rp_orders_dlt%[%d%]@%d+ %-> rp_orders  key=o%d+  error=.*database down") then lines = lines + 1 end
    end
    assert.equal(5, lines, r.stdout)
    assert.truthy(r.stdout:find("would replay 5 message(s)", 1, true), r.stdout)
    assert.equal(200, #H.kcat_consume(broker.bootstrap, "rp_orders", nil))
    local offs = committed("rp-dry", "rp_orders_dlt")
    for _, o in pairs(offs) do assert.equal(-1, o) end
  end)

  it("--to, --filter and --limit: the filtered messages to another topic, no more than the limit, the rest on the next run", function()
    local base = ("replay spec/fixtures/replay.lua --from rp_orders_dlt --group rp-filter --to rp_other --brokers %s"):format(H.q(broker.bootstrap))
    local filter = [[--filter 'msg.n % 10 == 0 and error:find("database down") ~= nil and headers.id == "o-id-" .. msg.n']]
    local r = luka(base .. " " .. filter .. " --limit 4", e)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("replayed 4 message(s) from rp_orders_dlt to rp_other", 1, true), r.stdout)
    local got = H.kcat_consume(broker.bootstrap, "rp_other", nil)
    assert.equal(4, #got)
    for _, rec in ipairs(got) do
      assert.equal(0, H.json_decode(rec.value).n % 10)
      assert.is_nil(rec.headers["luka-dlt-original-topic"])
      assert.equal("o-id-" .. H.json_decode(rec.value).n, rec.headers.id)
    end
    -- The rest of the filter's matches: 10 in all.
    local rest = luka(base .. " " .. filter, e)
    assert.equal(0, rest.code, rest.stderr)
    assert.truthy(rest.stdout:find("replayed 6 message(s)", 1, true), rest.stdout)
    local ns = {}
    for _, rec in ipairs(H.kcat_consume(broker.bootstrap, "rp_other", nil)) do
      local n = H.json_decode(rec.value).n
      assert.is_nil(ns[n], "replayed twice: " .. n)
      ns[n] = true
    end
    for n = 10, 100, 10 do assert.truthy(ns[n], n) end
  end)

  it("skips a message that is no dead letter, saying why, and replays the others", function()
    H.kcat_produce(broker.bootstrap, "rp_mixed_dlt", {
      { key = "a", value = "plain" },
      { key = "b", value = "{}", headers = { ["luka-dlt-original-topic"] = "rp_gone" } },
      { key = "c", value = "back", headers = { ["luka-dlt-original-topic"] = "rp_other", ["luka-dlt-error"] = "x" } },
    })
    local r = luka(("replay spec/fixtures/replay.lua --from rp_mixed_dlt --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("replayed 1 message(s) from rp_mixed_dlt; filtered out 0; skipped 2", 1, true), r.stdout)
    assert.truthy(r.stdout:find("skipped 1: no luka-dlt-original-topic header", 1, true), r.stdout)
    assert.truthy(r.stdout:find("skipped 1: topic 'rp_gone' does not exist", 1, true), r.stdout)
    local found = false
    for _, rec in ipairs(H.kcat_consume(broker.bootstrap, "rp_other", nil)) do
      if rec.key == "c" then found = rec.value == "back" and rec.headers["luka-dlt-error"] == nil end
    end
    assert.truthy(found)
  end)

  it("refuses a filter that does not compile, and stops at one that raises, committing nothing past it", function()
    local base = ("replay spec/fixtures/replay.lua --from rp_orders_dlt --group rp-bad --brokers %s "):format(H.q(broker.bootstrap))
    local r = luka(base .. "--filter 'msg.n =='", e)
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("--filter is not a Lua expression", 1, true), r.stderr)
    r = luka(base .. "--filter 'msg.customer.name == \"ada\"'", e)
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("--filter raised on rp_orders_dlt[", 1, true), r.stderr)
    assert.truthy(r.stderr:find("attempt to index a nil value", 1, true), r.stderr)
    local offs = committed("rp-bad", "rp_orders_dlt")
    for _, o in pairs(offs) do assert.equal(-1, o) end
  end)

  it("names a dead-letter topic that does not exist", function()
    local r = luka(("replay spec/fixtures/replay.lua --from rp_nope --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("topic 'rp_nope' does not exist", 1, true), r.stderr)
    r = luka(("replay spec/fixtures/replay.lua --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("give --from DLT_TOPIC", 1, true), r.stderr)
  end)
end)

describe("luka offsets", function()
  local dir, e, base

  setup(function()
    dir = H.tmpdir()
    e = { OUT = dir .. "/handled.jsonl", TOPIC = "off_orders", GROUP = "off_orders", DLT = "rp_other" }
    H.kcat_produce(broker.bootstrap, "off_orders", messages("f", 40))
    local app = run_app(e)
    H.wait_jsonl(e.OUT, 40, "40 handled", 60)
    H.wait_until(function()
      local offs, ends = committed("off_orders", "off_orders")
      for p, high in pairs(ends) do if offs[p] ~= high then return false end end
      return true
    end, 30, "the group committed up to the end")
    assert.equal(0, app.stop())
    base = ("offsets spec/fixtures/replay.lua --group off_orders --brokers %s "):format(H.q(broker.bootstrap))
  end)

  it("prints the plan and changes nothing without --execute", function()
    local before = committed("off_orders", "off_orders")
    local r = luka(base .. "--reset earliest", e)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:match("off_orders%s+0%s+%d+%s+0\n"), r.stdout)
    assert.truthy(r.stdout:find("nothing changed (a plan); add --execute", 1, true), r.stdout)
    assert.same(before, (committed("off_orders", "off_orders")))
  end)

  it("--execute resets to earliest, to an offset, to a time and to latest", function()
    local r = luka(base .. "--reset earliest --execute", e)
    assert.equal(0, r.code, r.stderr)
    local offs, ends = committed("off_orders", "off_orders")
    for p in pairs(ends) do assert.equal(0, offs[p]) end

    r = luka(base .. "--reset 3 --topic off_orders:1 --execute", e)
    assert.equal(0, r.code, r.stderr)
    offs = committed("off_orders", "off_orders")
    assert.equal(0, offs["0"])
    assert.equal(3, offs["1"])

    -- A time: the first message at or after it.  Messages from now on are
    -- later than every one produced so far.
    local recs = H.kcat_consume(broker.bootstrap, "off_orders", nil, { partition = 0 })
    local ts = recs[6].timestamp
    local before = 0
    for _, rec in ipairs(recs) do if rec.timestamp < ts then before = before + 1 end end
    r = luka(base .. "--reset @" .. ts .. " --topic off_orders:0 --execute", e)
    assert.equal(0, r.code, r.stderr)
    assert.equal(before, committed("off_orders", "off_orders")["0"])
    -- The same in ISO 8601.
    local iso = os.date("!%Y-%m-%dT%H:%M:%S", ts // 1000) .. (".%03dZ"):format(ts % 1000)
    r = luka(base .. "--reset " .. iso .. " --topic off_orders:0", e)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:match("off_orders%s+0%s+" .. before .. "%s+" .. before .. "\n"), r.stdout)

    r = luka(base .. "--reset latest --execute", e)
    assert.equal(0, r.code, r.stderr)
    offs, ends = committed("off_orders", "off_orders")
    for p, high in pairs(ends) do assert.equal(high, offs[p]) end
  end)

  it("refuses --execute while a luka runs in the group, and changes nothing", function()
    local app = run_app(e)
    app.wait_output("assigned", 30)
    local before = committed("off_orders", "off_orders")
    local r = luka(base .. "--reset earliest --execute", e)
    assert.equal(1, r.code, r.stdout)
    assert.truthy(r.stderr:find("group off_orders has members", 1, true), r.stderr)
    assert.truthy(r.stderr:find("nothing changed", 1, true), r.stderr)
    assert.same(before, (committed("off_orders", "off_orders")))
    assert.equal(0, app.stop())
    -- Nothing was handled again.
    assert.equal(40, #H.jsonl(e.OUT))
  end)

  it("says what is wrong with a bad --reset, group or topic", function()
    local r = luka(base .. "--reset yesterday", e)
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("--reset takes earliest, latest, an offset", 1, true), r.stderr)
    -- Times it cannot read: a day February lacks, before 1970 (librdkafka
    -- reads -1 and -2 as latest and earliest), an offset without its
    -- minutes' two digits (make fuzz's iso_time found that the old parser
    -- read past the string there), a time without seconds.
    for _, bad in ipairs({ "2026-02-29", "1969-12-31T23:59:59Z", "2026-11-29T19:00:00+5:3",
                           "2026-11-29T19:00Z" }) do
      r = luka(base .. "--reset " .. H.q(bad), e)
      assert.equal(2, r.code, bad)
      assert.truthy(r.stderr:find("got '" .. bad .. "'", 1, true), r.stderr)
    end
    r = luka(("offsets spec/fixtures/replay.lua --group off_ordrs --reset earliest --brokers %s"):format(H.q(broker.bootstrap)), e)
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("did you mean 'off_orders'", 1, true), r.stderr)
    r = luka(base .. "--reset earliest --topic off_orders:7", e)
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("there is no partition 7", 1, true), r.stderr)
  end)
end)

describe("luka replay killed mid-way", function()
  it("replays at most the messages published since its last commit again, and loses none", function()
    local msgs = {}
    for i = 1, 800 do
      -- The same headers for all: kcat sends them in one run.
      msgs[i] = { key = "c" .. i, value = ('{"n":%d}'):format(i),
        headers = { ["luka-dlt-original-topic"] = "rp_crash_out" } }
    end
    H.kcat_produce(broker.bootstrap, "rp_crash_dlt", msgs)
    -- A filter that takes 3 ms keeps the replay going for a while after
    -- its first commit (every 500 published), which its debug log shows.
    local filter = "(function() local t = os.clock() + 0.003 while os.clock() < t do end return true end)()"
    local p = H.spawn(("%s replay spec/fixtures/replay.lua --from rp_crash_dlt --brokers %s --filter %s --log-level debug")
      :format(H.q(H.luka), H.q(broker.bootstrap), H.q(filter)), { env = { OUT = "/dev/null" } })
    p.wait_output("committed rp_crash_dlt%[0%] up to offset 500", 60, "the replay's first commit")
    p.kill("KILL")
    assert.equal(137, p.wait(5))
    local r = luka(("replay spec/fixtures/replay.lua --from rp_crash_dlt --brokers %s"):format(H.q(broker.bootstrap)),
      { OUT = "/dev/null" })
    assert.equal(0, r.code, r.stderr)
    local again = tonumber(r.stdout:match("replayed (%d+) message"))
    assert.is_true(again >= 300 and again < 800, r.stdout)
    local seen, copies = {}, 0
    for _, rec in ipairs(H.kcat_consume(broker.bootstrap, "rp_crash_out", nil)) do
      seen[rec.key] = true
      copies = copies + 1
    end
    for i = 1, 800 do assert.truthy(seen["c" .. i], "lost c" .. i) end
    -- Twice only what was published after the last commit: less than a batch.
    assert.is_true(copies - 800 < 500, (copies - 800) .. " replayed twice")
    assert.equal(800, committed("luka-replay.rp_crash_dlt", "rp_crash_dlt")["0"])
  end)
end)
