-- The inner-loop commands: `luka publish` sends stdin lines through an app's
-- publisher exactly as luka.publish would, and `luka tail` shows what is on
-- a topic.  Both run against `luka broker`; kcat checks what tail cannot.
local H = require "support.helper"

local broker
local APP = "spec/fixtures/cli.lua"

setup(function()
  broker = H.broker_start { topics = { "rt_orders:2", "hdr_orders:1", "str_events:1", "bad_orders:1",
    "grp_orders:2", "end_orders:2", "bin:1", "tty_orders:1", "raw_k:2", "raw_z:1", "raw_x:1", "j_cmp:2",
    "last2:2", "ex:3", "fmt:2", "ts:1", "abs:2", "tomb_orders:4" } }
end)

teardown(function() broker.stop() end)

-- `luka publish APP TARGET args` with lines on stdin; the fixture's topics
-- start with prefix.
local function publish(prefix, target, lines, args)
  return H.run(("CLI_TOPIC=%s %s publish %s %s --brokers %s %s"):format(prefix, H.q(H.luka), APP,
    H.q(target), H.q(broker.bootstrap), args or ""), { input = table.concat(lines, "\n") .. "\n", timeout = 30 })
end

local function tail(topic, args)
  return H.run(("%s tail %s --brokers %s %s"):format(H.q(H.luka), H.q(topic), H.q(broker.bootstrap),
    args or ""), { timeout = 30 })
end

-- tail's output off a terminal: a header line, then the value on one line.
-- Returns { topic, partition, offset, time, key, headers = {name = value},
-- header_line, value } per message.  Header values here have no spaces.
local function messages(stdout)
  local lines, out = {}, {}
  for line in stdout:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  for i = 1, #lines, 2 do
    local head = lines[i]
    local topic, partition, offset, time, rest = head:match("^(%S+)%[(%d+)%]@(%d+) (%S+)(.*)$")
    assert(topic, "not a header line: " .. head)
    local m = { topic = topic, partition = tonumber(partition), offset = tonumber(offset), time = time,
                key = rest:match("^ key=(%S+)"), headers = {}, header_line = head, value = lines[i + 1] }
    for name, value in (rest:match(" headers: (.*)$") or ""):gmatch("([^%s=]+)=(%S+)") do
      m.headers[name] = value
    end
    out[#out + 1] = m
  end
  return out
end

local function by_key(list)
  local t = {}
  for _, m in ipairs(list) do t[m.key] = m end
  return t
end

local UUID = "^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"

describe("luka publish and luka tail", function()
  it("round-trip JSON lines, keyed by the publisher's rule, each with an id header", function()
    local orders = {
      { orderId = "o-1", total = 12.5, items = { { sku = "book", qty = 1 } } },
      { orderId = "o-2", total = 7, note = "żółw" },
      { orderId = "o-3", paid = true, tags = {} },
    }
    local lines = {}
    for i, o in ipairs(orders) do lines[i] = H.json_encode(o) end
    local r = publish("rt", "orders", lines)
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("published 3, failed 0", 1, true), r.stderr)

    local t = tail("rt_orders", "--from beginning --count 3")
    assert.equal(0, t.code, t.stderr)
    local got = by_key(messages(t.stdout))
    for _, o in ipairs(orders) do
      local m = assert(got[o.orderId], "no message keyed " .. o.orderId .. " in:\n" .. t.stdout)
      assert.equal("rt_orders", m.topic)
      assert.truthy(m.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), m.time)
      assert.truthy(m.headers.id and m.headers.id:match(UUID), m.header_line)
      assert.same(o, H.json_decode(m.value))
    end
    -- Only the input was published: not the app's start-up publish or timer.
    assert.equal(3, #H.kcat_consume(broker.bootstrap, "rt_orders", nil))
  end)

  it("takes the key from --key instead of the rule, and adds --header headers, keeping a given id", function()
    local r = publish("hdr", "orders", { '{"orderId":"o-1"}' },
      "--key fixed --header trace=t-1 --header id=given-1 --header 'note=two words'")
    assert.equal(0, r.code, r.stderr)
    local t = tail("hdr_orders", "--from beginning --count 1")
    assert.equal(0, t.code, t.stderr)
    local m = messages(t.stdout)[1]
    assert.equal("fixed", m.key)
    assert.equal("t-1", m.headers.trace)
    assert.equal("given-1", m.headers.id)
    assert.truthy(m.header_line:find(' note="two words"', 1, true), m.header_line)
    assert.equal('{"orderId":"o-1"}', m.value)
  end)

  it("publishes a line that is not JSON as it is, and accepts a channel as the target", function()
    local r = publish("str", "events", { "hello world", '{"broken": ', '"a JSON string"', "", "42" })
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("published 4, failed 0", 1, true), "the blank line is skipped: " .. r.stderr)
    local t = tail("str_events", "--from beginning --count 4")
    assert.equal(0, t.code, t.stderr)
    local got = messages(t.stdout)
    assert.same({ "hello world", '{"broken": ', "a JSON string", "42" },
      { got[1].value, got[2].value, got[3].value, got[4].value })
    -- A channel has no key rule and nothing is being handled: the id is the key.
    assert.equal(got[1].headers.id, got[1].key)
  end)

  it("refuses an unknown target with a suggestion, and counts a line the key rule rejects", function()
    local r = publish("bad", "ordres", { '{"orderId":"o-1"}' })
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("unknown publish target 'ordres' (did you mean 'orders'?)", 1, true), r.stderr)

    r = publish("bad", "orders", { '{"orderId":"o-1"}', '{"n":2}' })
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("line 2: luka.publish('orders'): the payload has no key", 1, true), r.stderr)
    assert.truthy(r.stderr:find("published 1, failed 1", 1, true), r.stderr)
    local t = tail("bad_orders", "--from beginning --count 1")
    assert.equal("o-1", messages(t.stdout)[1].key)
  end)
end)

describe("luka tail", function()
  it("with --group commits what it printed, so the group's next tail shows only newer messages", function()
    local first = {}
    for n = 1, 3 do first[n] = ('{"orderId":"o-%d"}'):format(n) end
    assert.equal(0, publish("grp", "orders", first).code)
    local t = tail("grp_orders", "--group viewers --from beginning --count 3")
    assert.equal(0, t.code, t.stderr)
    assert.equal(3, #messages(t.stdout))

    assert.equal(0, publish("grp", "orders", { '{"orderId":"o-4"}', '{"orderId":"o-5"}' }).code)
    t = tail("grp_orders", "--group viewers --from beginning --count 2")
    assert.equal(0, t.code, t.stderr)
    local keys = {}
    for _, m in ipairs(messages(t.stdout)) do keys[#keys + 1] = m.key end
    table.sort(keys)
    assert.same({ "o-4", "o-5" }, keys)
  end)

  it("with --from end shows only messages published after it started, and exits 0 on SIGTERM", function()
    assert.equal(0, publish("end", "orders", { '{"orderId":"old"}' }).code)
    local dir = H.tmpdir()
    local p = H.spawn(("%s tail end_orders --from end --brokers %s"):format(H.q(H.luka), H.q(broker.bootstrap)),
      { stdout = dir .. "/out", stderr = dir .. "/err" })
    H.wait_until(function() return (H.read_file(dir .. "/err") or ""):find("reading end_orders") end, 10,
      "tail to start reading")
    assert.equal(0, publish("end", "orders", { '{"orderId":"new-1"}', '{"orderId":"new-2"}' }).code)
    H.wait_until(function() return #messages(H.read_file(dir .. "/out") or "") == 2 end, 10, "two messages")
    p.kill("TERM")
    assert.equal(0, p.wait(10))
    assert.truthy(H.read_file(dir .. "/err"):find("closed after 2 message(s)", 1, true))
    local got = by_key(messages(H.read_file(dir .. "/out")))
    assert.truthy(got["new-1"] and got["new-2"])
    assert.is_nil(got["old"])
  end)

  it("escapes control and non-UTF-8 bytes in values, keys and headers, and marks tombstones", function()
    H.kcat_produce(broker.bootstrap, "bin", {
      { key = "k\2", value = "a\1b\255c\nd\\e ü", headers = { bin = "\1\2" } },
      { key = "gone", value = nil },
    })
    local t = tail("bin", "--from beginning --count 2")
    assert.equal(0, t.code, t.stderr)
    local got = messages(t.stdout)
    assert.equal([[k\x02]], got[1].key)
    assert.equal([[\x01\x02]], got[1].headers.bin)
    assert.equal([[a\x01b\xffc\nd\\e ü]], got[1].value)
    assert.equal("(tombstone)", got[2].value)
  end)

  it("indents JSON when stdout is a terminal, keeping numbers as they were sent", function()
    H.kcat_produce(broker.bootstrap, "tty_orders", { '{"orderId":"o-1","price":0.1,"items":[1,2],"none":{}}' })
    local t = H.run(("script -qec %s /dev/null"):format(H.q(("%s tail tty_orders --from beginning --count 1 "
      .. "--brokers %s --log-level warn"):format(H.q(H.luka), H.q(broker.bootstrap)))), { timeout = 30 })
    assert.equal(0, t.code, t.stdout)
    local value = t.stdout:gsub("\r", ""):match("\n(.*)$")
    assert.equal('{\n  "orderId": "o-1",\n  "price": 0.1,\n  "items": [\n    1,\n    2\n  ],\n  "none": {}\n}\n\n',
      value)
  end)

  it("says so when the topic does not exist", function()
    local t = tail("no_such_topic", "--from beginning")
    assert.equal(1, t.code)
    assert.truthy(t.stderr:find("topic 'no_such_topic' does not exist at " .. broker.bootstrap, 1, true), t.stderr)
  end)
end)

-- `luka publish -t TOPIC args` with input on stdin (no app).
local function publish_raw(topic, input, args)
  return H.run(("%s publish -t %s -b %s %s"):format(H.q(H.luka), H.q(topic), H.q(broker.bootstrap), args or ""),
    { input = input, timeout = 30 })
end

-- `luka tail` with kcat's options, output as it is.
local function tail_raw(args)
  return H.run(("%s -b %s %s --log-level warn"):format(H.q(H.luka) .. " tail", H.q(broker.bootstrap), args),
    { timeout = 30 })
end

describe("luka publish -t TOPIC, without an app", function()
  it("sends each line as it is, keyed by -K's delimiter, with -H headers, to -p's partition, as kcat reads them", function()
    local r = publish_raw("raw_k", 'k1:{"a": 1}\nk2:two:colons\n\nno key here\n:empty key\n',
      "-K : -H src=cli -H 'note=two words' -p 1")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("published 4, failed 0", 1, true), "the empty line is no message: " .. r.stderr)
    local got = H.kcat_consume(broker.bootstrap, "raw_k", nil)
    assert.equal(4, #got)
    local want = {
      { key = "k1", value = '{"a": 1}' },
      { key = "k2", value = "two:colons" },
      { key = nil, value = "no key here" },
      { key = "", value = "empty key" },
    }
    for i, w in ipairs(want) do
      assert.equal(1, got[i].partition)
      assert.equal(w.key, got[i].key, "key of message " .. i)
      assert.equal(w.value, got[i].value, "value of message " .. i)
      assert.same({ { "src", "cli" }, { "note", "two words" } }, got[i].header_list)
    end
  end)

  it("with -Z sends an empty value as null, a tombstone, and an empty key as none; -k keys every line", function()
    local r = publish_raw("raw_z", "gone:\n:nokey\n", "-K: -Z")
    assert.equal(0, r.code, r.stderr)
    r = publish_raw("raw_z", "plain\n", "-k fixed")
    assert.equal(0, r.code, r.stderr)
    local got = H.kcat_consume(broker.bootstrap, "raw_z", nil)
    assert.equal(3, #got)
    assert.equal("gone", got[1].key)
    assert.is_nil(got[1].value, "a tombstone")
    assert.is_nil(got[2].key)
    assert.equal("nokey", got[2].value)
    assert.equal("fixed", got[3].key)
    assert.equal("plain", got[3].value)
  end)

  it("sends a key to the partition an app's publisher sends it to, so a tombstone meets its key", function()
    local lines, tombs = {}, {}
    for n = 1, 8 do
      lines[n] = ('{"orderId":"t-%d"}'):format(n)
      tombs[n] = ("t-%d:"):format(n)
    end
    assert.equal(0, publish("tomb", "orders", lines).code)
    local r = publish_raw("tomb_orders", table.concat(tombs, "\n") .. "\n", "-K : -Z")
    assert.equal(0, r.code, r.stderr)
    local partition_of = {}
    local got = H.kcat_consume(broker.bootstrap, "tomb_orders", nil)
    assert.equal(16, #got)
    for _, m in ipairs(got) do
      if m.value then
        partition_of[m.key] = m.partition
      end
    end
    for _, m in ipairs(got) do
      if not m.value then assert.equal(partition_of[m.key], m.partition, "the tombstone of " .. m.key) end
    end
  end)

  it("sets -X librdkafka properties, and names a bad one", function()
    local r = publish_raw("raw_x", "v\n", "-X linger.ms=0 -X compression.type=gzip")
    assert.equal(0, r.code, r.stderr)
    assert.equal("v", H.kcat_consume(broker.bootstrap, "raw_x", nil)[1].value)
    r = publish_raw("raw_x", "v\n", "-X no.such.property=1")
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("-X no.such.property=1: No such configuration property", 1, true), r.stderr)
  end)
end)

describe("luka tail with kcat's options", function()
  -- Messages on both partitions of a topic, by kcat: n per partition.
  local function fill(topic, n)
    local msgs = {}
    for p = 0, 1 do
      for i = 0, n - 1 do
        msgs[#msgs + 1] = { partition = p, key = ("p%d-%d"):format(p, i), value = ("v%d-%d"):format(p, i) }
      end
    end
    H.kcat_produce(broker.bootstrap, topic, msgs)
  end

  local function sorted_lines(text)
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    return lines
  end

  it("-J prints the envelope kcat -J prints, one JSON object a line", function()
    H.kcat_produce(broker.bootstrap, "j_cmp", {
      { partition = 0, key = "k1", value = '{"orderId":"o-1"}', headers = { { "a", "1" }, { "b", "x y" } } },
      { partition = 0, value = 'quote " backslash \\ tab \t newline \n ü' },
      { partition = 1, key = "gone", value = nil },
    })
    local t = tail_raw("j_cmp -J -o beginning -e")
    assert.equal(0, t.code, t.stderr)
    local k = H.run(("kcat -C -b %s -t j_cmp -J -o beginning -e -q"):format(H.q(broker.bootstrap)))
    local function objects(text)
      local list = {}
      for line in text:gmatch("[^\n]+") do list[#list + 1] = H.json_decode(line) end
      table.sort(list, function(a, b) return a.partition * 1e9 + a.offset < b.partition * 1e9 + b.offset end)
      return list
    end
    local mine, theirs = objects(t.stdout), objects(k.stdout)
    assert.equal(3, #mine)
    assert.same(theirs, mine)
    -- What jq users rely on: decodable strings, and null for a null key and a tombstone.
    assert.equal('quote " backslash \\ tab \t newline \n ü', mine[2].payload)
    assert.is_nil(mine[3].payload)
  end)

  it("-f prints kcat's tokens and escapes exactly as kcat -f does", function()
    H.kcat_produce(broker.bootstrap, "fmt", {
      { partition = 0, key = "k1", value = "v1", headers = { { "h1", "x" }, { "h2", "y" } } },
      { partition = 1, value = "keyless" },
      { partition = 1, key = "gone", value = nil },
    })
    local f = [[%t|%p|%o|%k|%s|%h|%T|%S|%K|100%%\t.\n]]
    local t = tail_raw("fmt -o beginning -e -f " .. H.q(f))
    assert.equal(0, t.code, t.stderr)
    local k = H.run(("kcat -C -b %s -t fmt -o beginning -e -q -f %s"):format(H.q(broker.bootstrap), H.q(f)))
    assert.same(sorted_lines(k.stdout), sorted_lines(t.stdout))
    assert.equal(3, #sorted_lines(t.stdout))
  end)

  it("-o -2 prints the last two messages of each partition, as kcat -o -2 does", function()
    fill("last2", 5)
    local f = "%p %o %k %s\\n"
    local t = tail_raw("-t last2 -o -2 -e -f " .. H.q(f))
    assert.equal(0, t.code, t.stderr)
    assert.same({ "0 3 p0-3 v0-3", "0 4 p0-4 v0-4", "1 3 p1-3 v1-3", "1 4 p1-4 v1-4" }, sorted_lines(t.stdout))
    local k = H.run(("kcat -C -b %s -t last2 -o -2 -e -q -f %s"):format(H.q(broker.bootstrap), H.q(f)))
    assert.same(sorted_lines(k.stdout), sorted_lines(t.stdout))
    -- More than a partition holds: from its beginning.
    t = tail_raw("last2 -o -50 -e -f '%o\\n' -p 0")
    assert.same({ "0", "1", "2", "3", "4" }, sorted_lines(t.stdout))
  end)

  it("-o N starts at offset N and -p reads one partition", function()
    fill("abs", 4)
    local t = tail_raw("abs -o 2 -p 1 -e -f '%p %o\\n'")
    assert.equal(0, t.code, t.stderr)
    assert.same({ "1 2", "1 3" }, sorted_lines(t.stdout))
    t = tail_raw("abs -p 2 -e")
    assert.equal(1, t.code)
    assert.truthy(t.stderr:find("abs has 2 partition(s), 0..1: there is no partition 2", 1, true), t.stderr)
  end)

  it("-e exits once every partition's end is reached, empty partitions included; -c exits first when smaller", function()
    H.kcat_produce(broker.bootstrap, "ex", { { partition = 0, value = "a" }, { partition = 0, value = "b" },
      { partition = 1, value = "c" } })
    local t0 = H.now()
    local t = tail_raw("ex -o beginning -e -f '%s\\n'")
    assert.equal(0, t.code, t.stderr)
    assert.same({ "a", "b", "c" }, sorted_lines(t.stdout))
    assert.is_true(H.now() - t0 < 10, "exited at the end")
    -- From the end, nothing is left to read.
    t = tail_raw("ex -e")
    assert.equal(0, t.code, t.stderr)
    assert.equal("", t.stdout)
    t = tail_raw("ex -o beginning -e -c 1 -f '%s\\n'")
    assert.equal(0, t.code)
    assert.equal(1, #sorted_lines(t.stdout))
    -- In a group too, once the group's partitions are assigned and read.
    t = tail_raw("ex -G ex_viewers -o beginning -e -f '%s\\n'")
    assert.equal(0, t.code, t.stderr)
    assert.same({ "a", "b", "c" }, sorted_lines(t.stdout))
  end)

  it("-o s@MS starts at the first message at or after that time: none after a time to come", function()
    -- The embedded broker (librdkafka 2.0.2's mock cluster) answers every
    -- lookup by time with "no such message", so the lookup of a time in the
    -- past cannot be checked here; that of a time to come starts at the end
    -- on a real cluster and here alike.
    H.kcat_produce(broker.bootstrap, "ts", { "old" })
    local t = tail_raw("ts -o s@" .. math.floor((os.time() + 3600) * 1000) .. " -e")
    assert.equal(0, t.code, t.stderr)
    assert.equal("", t.stdout)
  end)
end)

describe("bad options", function()
  it("exit 2 with a message naming the option", function()
    local cases = {
      { "tail", "which topic?" },
      { "tail t --from middle", "--from must be 'beginning' or 'end', got 'middle'" },
      { "tail t --count 0", "--count takes a positive number of messages, got '0'" },
      { "tail t --count", "--count needs a value: --count N" },
      { "tail t --follow", "unknown option '--follow'" },
      { "tail t u", "one topic at a time: got 't' and 'u'" },
      { "publish " .. APP, "which publisher or channel?" },
      { "publish " .. APP .. " orders --header trace", "--header takes NAME=VALUE, got 'trace'" },
      { "publish " .. APP .. " orders --keys k", "unknown option '--keys' (did you mean '--key'?)" },
      { "publish " .. APP .. " orders -K :", "-K, -p, -Z and -X go with -t TOPIC" },
      { "publish -t t " .. APP, "-t publishes without an app: got '" .. APP .. "' too" },
      { "publish -t t -X linger.ms", "-X takes PROPERTY=VALUE, got 'linger.ms'" },
      { "publish", "which app, or which topic?" },
      { "tail t -o middle", "-o takes beginning, end, an offset N, -N or s@MS, got 'middle'" },
      { "tail t -o s@soon", "-o takes beginning, end, an offset N, -N or s@MS, got 's@soon'" },
      { "tail t -G g -o -2", "in a group (--group), -o takes only beginning or end" },
      { "tail t -G g -p 0", "in a group (--group), the group assigns partitions: no -p" },
      { "tail t -f '%x'", "-f: unknown token '%x'" },
      { "tail t -f 'abc%'", "-f: a lone % ends 'abc%'" },
      { "tail t -f %s -J", "-f and -J both say how to print: choose one" },
      { "tail -t t u", "one topic at a time: got 't' and 'u'" },
    }
    for _, c in ipairs(cases) do
      local r = H.run(H.q(H.luka) .. " " .. c[1])
      assert.equal(2, r.code, c[1])
      assert.truthy(r.stderr:find(c[2], 1, true), ("luka %s: %s"):format(c[1], r.stderr))
      assert.equal("", r.stdout)
    end
    for _, cmd in ipairs({ "tail", "publish" }) do
      local r = H.run(H.q(H.luka) .. " " .. cmd .. " --help")
      assert.equal(0, r.code)
      assert.truthy(r.stdout:find("usage: luka " .. cmd, 1, true))
    end
  end)
end)
