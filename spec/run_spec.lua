-- The core host: luka run hands Kafka messages to Lua handlers, commits only
-- what is done, publishes, and stops cleanly.  Each spec runs luka against
-- `luka broker` in its own process and produces with kcat or KafkaJS.
local H = require "support.helper"

local broker

-- Starts `luka run APP` on the broker, with env; returns the process.
local function run(app, env, args)
  return H.spawn(("%s run %s --brokers %s %s"):format(H.luka, app, broker.bootstrap, args or ""),
    { env = env })
end

-- The records the record fixture wrote to path.
local records = H.jsonl
local function wait_records(path, n, what, timeout) return H.wait_jsonl(path, n, what, timeout or 20) end

local function numbered(from, to, nkeys)
  local msgs = {}
  for n = from, to do
    msgs[#msgs + 1] = { key = "k" .. (n % (nkeys or 8)), value = ('{"n":%d}'):format(n) }
  end
  return msgs
end

setup(function()
  broker = H.broker_start { topics = { "events:4", "order:4", "meta:4", "types:1", "graceful:4",
    "firstcommit:1",
    "fail:1", "pub_in:2", "pub_out:2", "pub_plain:2", "js_in:4", "only:1" } }
end)

teardown(function() broker.stop() end)

describe("luka run", function()
  it("hands every message to its handler exactly once, in order within each partition", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "order", numbered(1, 400))
    local p = run("spec/fixtures/record.lua", { OUT = out, TOPIC = "order", GROUP = "order" })
    local r = wait_records(out, 400)
    assert.equal(0, p.stop())
    assert.equal(400, #records(out))
    local seen, last_offset, last_n = {}, {}, {}
    for _, rec in ipairs(r) do
      local n, part = rec.msg.n, rec.meta.partition
      assert.is_nil(seen[n], "message " .. n .. " handled twice")
      seen[n] = true
      assert.is_true(rec.meta.offset > (last_offset[part] or -1), "offsets go forward in a partition")
      assert.is_true(n > (last_n[part] or 0), "messages keep their order in a partition")
      last_offset[part], last_n[part] = rec.meta.offset, n
    end
    for n = 1, 400 do assert.is_true(seen[n], "message " .. n .. " never handled") end
  end)

  it("gives the handler topic, partition, offset, key, timestamp, headers, id and attempt", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local before = os.time() * 1000
    H.kcat_produce(broker.bootstrap, "meta", {
      { key = "customer-7", value = '{"n":1}', partition = 2, headers = { id = "msg-1", trace = "abc" } },
    })
    local p = run("spec/fixtures/record.lua", { OUT = out, TOPIC = "meta", GROUP = "meta" })
    local meta = wait_records(out, 1)[1].meta
    p.stop()
    assert.equal("meta", meta.topic)
    assert.equal(2, meta.partition)
    assert.equal(0, meta.offset)
    assert.equal("customer-7", meta.key)
    assert.equal("msg-1", meta.id)
    assert.same({ id = "msg-1", trace = "abc" }, meta.headers)
    assert.equal(1, meta.attempt)
    assert.is_true(meta.timestamp >= before - 60000 and meta.timestamp <= before + 60000,
      "timestamp is the produce time in milliseconds")
  end)

  it("decodes JSON into Lua types: integers, floats, booleans, null, nesting, unicode, empty containers", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "types", { {
      value = '{"int":42,"float":1.5,"bool":true,"null":null,"nested":{"a":{"b":[1,"two"]}},' ..
        '"unicode":"żółw 🐢 ü","empty_array":[],"empty_object":{},"big":9007199254740993,"negative":-7}',
    } })
    local p = H.spawn(("%s run spec/fixtures/types.lua --brokers %s"):format(H.luka, broker.bootstrap),
      { env = { OUT = out } })
    local t = H.wait_until(function() return H.read_lines(out)[1] end, 20, "the types record")
    p.stop()
    t = H.json_decode(t)
    assert.equal("integer", t.int)
    assert.equal("float", t.float)
    assert.equal("boolean", t.bool)
    assert.is_true(t.null_is_luka_null)
    assert.equal("two", t.nested)
    assert.equal("żółw 🐢 ü", t.unicode)
    assert.same({ len = 0, is_array = true }, t.empty_array)
    assert.same({ empty = true, is_array = false }, t.empty_object)
    assert.equal(9007199254740993, math.tointeger(t.big) or t.big)
    local back = H.json_decode(t.reencoded)
    assert.same({}, back.empty_array)
    assert.truthy(t.reencoded:find('"empty_array":[]', 1, true), "an empty array stays an array")
    assert.truthy(t.reencoded:find('"empty_object":{}', 1, true), "an empty object stays an object")
    assert.truthy(t.reencoded:find('"big":9007199254740993', 1, true), "integers keep every digit")
  end)

  it("passes raw payloads as strings and tombstones as nil", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "events", {
      { key = "a", value = "not json at all", partition = 0 },
      { key = "a", value = nil, partition = 0 },
    })
    local p = run("spec/fixtures/record.lua", { OUT = out, TOPIC = "events", GROUP = "raw", FORMAT = "raw" })
    local r = wait_records(out, 2)
    p.stop()
    assert.equal("not json at all", r[1].msg)
    assert.is_true(r[2].tombstone)
  end)

  it("stops on SIGTERM after committing, so a restart redelivers nothing", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "graceful", numbered(1, 100))
    local env = { OUT = out, TOPIC = "graceful", GROUP = "graceful" }
    local p = run("spec/fixtures/record.lua", env)
    wait_records(out, 100)
    p.kill("TERM")
    assert.equal(0, p.wait(15), "exit code 0 after SIGTERM")
    assert.truthy(p.output():find("closed"), "the consumer closed")
    H.kcat_produce(broker.bootstrap, "graceful", numbered(101, 150))
    p = run("spec/fixtures/record.lua", env)
    local r = wait_records(out, 150)
    H.sleep(1.5) -- anything redelivered would arrive now
    assert.equal(0, p.stop())
    r = records(out)
    assert.equal(150, #r, "nothing handled twice")
    local seen = {}
    for _, rec in ipairs(r) do
      assert.is_nil(seen[rec.msg.n], "message " .. rec.msg.n .. " redelivered")
      seen[rec.msg.n] = true
    end
  end)

  it("leaves a failed message uncommitted and exits non-zero, so a restart delivers it again", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "fail", numbered(1, 10))
    local env = { OUT = out, TOPIC = "fail", GROUP = "fail", FAIL_ON = "5" }
    local p = run("spec/fixtures/record.lua", env)
    assert.equal(3, p.wait(30), "exit code 3 when an endpoint stops on a failure")
    local log = p.output()
    assert.truthy(log:find("refusing message 5", 1, true), "the error is logged")
    assert.truthy(log:find("stack traceback", 1, true), "with its traceback")
    assert.equal(4, #records(out))
    env.FAIL_ON = nil
    p = run("spec/fixtures/record.lua", env)
    local r = wait_records(out, 10)
    H.sleep(1)
    p.stop()
    r = records(out)
    assert.equal(10, #r, "only the failed message and those after it come again")
    for i, rec in ipairs(r) do assert.equal(i, rec.msg.n) end
  end)

  it("runs only the endpoints named on the command line", function()
    local dir = H.tmpdir()
    local app = dir .. "/two.lua"
    H.write_file(app, [[
      local luka = require "luka"
      local out = assert(io.open(os.getenv("OUT"), "a"))
      out:setvbuf("line")
      luka.consumer "first" { topics = { "only" }, config = { ["auto.offset.reset"] = "earliest" },
        handle = function() out:write("first\n") end }
      luka.consumer "second" { topics = { "only" }, config = { ["auto.offset.reset"] = "earliest" },
        handle = function() out:write("second\n") end }
    ]])
    H.kcat_produce(broker.bootstrap, "only", { "{}" })
    local p = run(app, { OUT = dir .. "/out" }, "second")
    H.wait_until(function() return H.read_lines(dir .. "/out")[1] end, 20, "a handled message")
    H.sleep(0.5)
    p.stop()
    assert.same({ "second" }, H.read_lines(dir .. "/out"))
    local bad = H.run(("OUT=/dev/null %s run %s --brokers %s nosuch"):format(H.luka, app, broker.bootstrap))
    assert.equal(2, bad.code)
    assert.truthy(bad.stderr:find("no endpoint named 'nosuch'", 1, true))
  end)
end)

describe("the first commit of an assignment", function()
  -- librdkafka's commit timer runs from the assignment, so its first
  -- commit lands up to two intervals after it; luka commits a partition's
  -- first done offset at once, unless the app chose its own interval.
  local function start(out, group, extra)
    local env = { OUT = out, TOPIC = "firstcommit", GROUP = group }
    for k, v in pairs(extra or {}) do env[k] = v end
    return run("spec/fixtures/record.lua", env, "--log-level debug")
  end

  it("is made as soon as the partition's first message is done, so a crash right after replays nothing", function()
    local out = H.tmpdir() .. "/out.jsonl"
    H.kcat_produce(broker.bootstrap, "firstcommit", { '{"n":1}' })
    local p = start(out, "firstcommit1")
    wait_records(out, 1)
    p.wait_output("committing the first done offsets of the assignment", 10, "the first commit")
    -- The group's committed offset, as kafka-consumer-groups would show it.
    H.wait_until(function()
      local r = H.run(("OUT=/dev/null TOPIC=firstcommit GROUP=firstcommit1 %s lag spec/fixtures/record.lua --brokers %s")
        :format(H.luka, broker.bootstrap))
      return r.stdout:match("firstcommit%s+0%s+1%s")
    end, 10, "offset 1 committed for firstcommit[0]")
    p.kill("KILL")
    p.wait()
    local again = start(out, "firstcommit1")
    again.wait_output("assigned firstcommit%[0%]", 20, "the restart's assignment")
    H.sleep(2)
    again.stop()
    assert.equal(1, #records(out), "message 1 was handled again after the crash")
  end)

  it("keeps an interval the app chose", function()
    local out = H.tmpdir() .. "/out.jsonl"
    local p = start(out, "firstcommit2", { LUKA_KAFKA_AUTO_COMMIT_INTERVAL_MS = "60000" })
    wait_records(out, 1)
    H.sleep(1)
    p.stop()
    assert.falsy(p.output():find("committing the first done offsets", 1, true), p.output())
  end)
end)

describe("luka.publish", function()
  it("sends keys by rule, explicit key, inherited key or message id, with headers kcat reads back", function()
    H.kcat_produce(broker.bootstrap, "pub_in", { { key = "customer-9", value = '{"n":0}' } })
    local p = run("spec/fixtures/publish.lua", {})
    local got = H.kcat_consume(broker.bootstrap, "pub_out", 3, { timeout = 20 })
    local plain = H.kcat_consume(broker.bootstrap, "pub_plain", 2, { timeout = 20 })
    p.stop()
    local by_key = {}
    for _, m in ipairs(got) do by_key[m.key] = m end
    assert.truthy(by_key["o-1"], "the key from the orderId field")
    assert.equal("t-1", by_key["o-1"].headers.trace)
    assert.truthy(by_key["o-1"].headers.id:match("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"), "a UUID id header")
    assert.equal(2, H.json_decode(by_key["explicit"].value).n, "an explicit key wins")
    assert.equal(3, H.json_decode(by_key["fn-3"].value).n, "a key function")
    local inherited, timer
    for _, m in ipairs(plain) do
      if m.value == "from a timer" then timer = m else inherited = m end
    end
    assert.equal("customer-9", inherited.key, "the handled message's key is inherited")
    assert.equal("given-id", inherited.headers.id, "a given id is kept")
    assert.equal(timer.headers.id, timer.key, "with no other rule the key is the message id")
  end)

  it("round-trips with KafkaJS, a client that shares no code with librdkafka", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local msgs = {}
    for n = 1, 20 do msgs[n] = { key = "js-" .. n, value = ('{"n":%d}'):format(n), headers = { from = "kafkajs" } } end
    local res = H.node("produce.js", { broker.bootstrap, "js_in" }, { messages = msgs })
    assert.equal(0, res.code, res.stderr)
    local p = run("spec/fixtures/record.lua", { OUT = out, TOPIC = "js_in", GROUP = "js" })
    local r = wait_records(out, 20)
    p.stop()
    local seen = {}
    for _, rec in ipairs(r) do
      assert.equal("kafkajs", rec.meta.headers.from)
      assert.equal("js-" .. rec.msg.n, rec.meta.key)
      seen[rec.msg.n] = true
    end
    for n = 1, 20 do assert.is_true(seen[n]) end
    -- And KafkaJS reads what luka publishes.
    H.kcat_produce(broker.bootstrap, "pub_in", { { key = "customer-js", value = '{"n":0}' } })
    p = run("spec/fixtures/publish.lua", {})
    res = H.node("consume.js", { broker.bootstrap, "pub_plain", "2", "js-reader" })
    p.stop()
    assert.equal(0, res.code, res.stderr)
    local keys = {}
    for _, m in ipairs(res.lines) do keys[#keys + 1] = m.key end
    assert.is_true(#res.lines >= 2)
    assert.is_string(res.lines[1].headers.id)
  end)
end)
