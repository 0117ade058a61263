-- Bad input: payloads, headers, keys, handlers, app scripts, options and
-- broker addresses that are wrong in every way we could think of.  For each,
-- luka does not crash, does not stall (the next good message is handled), says
-- clearly what went wrong, and routes the message by its policy: here an
-- error channel topic, read back with kcat.
local H = require "support.helper"

local broker, luka, dir
local started = 0 -- luka runs started on "bad"; more than one means it died
local cases = 0

local function start_luka()
  started = started + 1
  luka = H.spawn(("%s run spec/fixtures/bad.lua --brokers %s"):format(H.luka, broker.bootstrap),
    { env = { OUT = dir .. "/out.jsonl", TOPIC = "bad", DLT = "bad_dlt" } })
end

local function records(path)
  local out = {}
  for i, line in ipairs(H.read_lines(path or (dir .. "/out.jsonl"))) do out[i] = H.json_decode(line) end
  return out
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Produces msg (see H.kcat_produce; its key defaults to "case-NAME") and
-- then a good message to the same partition, and waits for the good one to
-- be handled: nothing stalled.  Returns the record of the bad message, if
-- its handler recorded one, and luka's log lines written meanwhile.
local function case(name, msg)
  cases = cases + 1
  local id = 100000 + cases
  local log_from = #luka.output() + 1
  msg.key = msg.key or ("case-" .. name)
  H.kcat_produce(broker.bootstrap, "bad", { msg, { key = "good-" .. name, value = ('{"n":%d}'):format(id) } },
    { args = "-X message.max.bytes=20000000" })
  local good = H.wait_until(function()
    assert(luka.alive(), "luka exited:\n" .. luka.output():sub(log_from))
    for _, r in ipairs(records()) do if r.n == id then return r end end
  end, 30, "the good message after " .. name)
  assert.is_true(luka.alive(), "luka is still running")
  local bad
  for _, r in ipairs(records()) do if r.offset == good.offset - 1 then bad = r end end
  return bad, luka.output():sub(log_from)
end

-- The error channel's copy of the message with this key.
local function dead_letter(key, topic)
  return H.wait_until(function()
    for _, r in ipairs(H.kcat_consume(broker.bootstrap, topic or "bad_dlt", nil, { timeout = 20 })) do
      if r.key == key then return r end
    end
  end, 20, "the dead letter of " .. key, 0.5)
end

-- Asserts that the case was dead-lettered with an error containing text,
-- which the log shows too.
local function dead_lettered(name, log, text)
  local d = dead_letter("case-" .. name)
  local err = d.headers["luka-dlt-error"]
  assert.truthy(err:find(text, 1, true), ("dead letter error '%s' lacks '%s'"):format(err, text))
  assert.truthy(log:find(text, 1, true), "the log says it:\n" .. log)
  assert.truthy(log:find("dead-lettered to bad_dlt", 1, true), log)
  return d, err
end

setup(function()
  broker = H.broker_start { topics = { "bad:1", "bad_dlt:1", "bigbad:1", "bigbad_dlt:1" } }
  dir = H.tmpdir()
  start_luka()
  luka.wait_output("assigned bad%[0%]", 20, "luka to join its group")
end)

teardown(function()
  if luka then luka.stop() end
  broker.stop()
end)

describe("bad payloads", function()
  it("malformed JSON goes to the error channel with the decode position", function()
    local bad, log = case("malformed", { value = '{"n": 1,,}' })
    assert.is_nil(bad, "the handler never saw it")
    local d = dead_lettered("malformed", log, "invalid JSON at line 1, column 9")
    assert.equal('{"n": 1,,}', d.value)
    assert.equal("1", d.headers["luka-dlt-attempts"], "decode errors are not retried")
  end)

  it("JSON nested 10,000 deep is refused at the parser's depth limit, not by a stack overflow", function()
    case("deep", { value = ("["):rep(10000) .. ("]"):rep(10000) })
    local _, log = case("deep objects", { value = ('{"a":'):rep(10000) .. "1" .. ("}"):rep(10000) })
    dead_lettered("deep", luka.output(), "maximum parsing depth")
    dead_lettered("deep objects", log, "maximum parsing depth")
  end)

  it("invalid UTF-8 in a JSON string is a decode error", function()
    local _, log = case("utf8", { value = '{"s":"\255\254"}' })
    dead_lettered("utf8", log, "unable to decode byte 0xff")
  end)

  it("a 1 MiB payload is handled", function()
    local bad = case("1MiB", { value = '{"n":1,"blob":"' .. ("a"):rep(1 << 20) .. '"}' })
    assert.equal(1 << 20, bad.blob)
  end)

  it("a 1 MiB payload that does not decode goes to the error channel", function()
    local out = dir .. "/bigbad.jsonl"
    local p = H.spawn(("%s run spec/fixtures/bad.lua --brokers %s"):format(H.luka, broker.bootstrap),
      { env = { OUT = out, TOPIC = "bigbad", GROUP = "bigbad", DLT = "bigbad_dlt" } })
    H.kcat_produce(broker.bootstrap, "bigbad", {
      { key = "case-bigbad", value = '{"n":1,"blob":"' .. ("a"):rep(1 << 20) },
      { key = "good-bigbad", value = '{"n":2}' },
    }, { args = "-X message.max.bytes=20000000" })
    H.wait_until(function()
      assert(p.alive(), ("luka exited with code %s:\n%s"):format(tostring(p.wait(0)), p.output()))
      for _, r in ipairs(records(out)) do if r.n == 2 then return true end end
    end, 30, "the good message after the big bad one")
    local d = dead_letter("case-bigbad", "bigbad_dlt")
    p.stop()
    assert.truthy(d.headers["luka-dlt-error"]:find("premature end of input", 1, true))
  end)

  it("an empty payload is a decode error", function()
    local _, log = case("empty", { value = "" })
    dead_lettered("empty", log, "invalid JSON at line 1, column 0")
  end)

  it("a null payload (tombstone) reaches the handler as nil", function()
    local bad = case("tombstone", { value = nil })
    assert.equal("nil", bad.type)
  end)

  it("binary keys and header names and values reach the handler byte for byte", function()
    -- kcat sends NUL in a key, but not in a header.
    local key, name, value = "\0\1\255 key\n", "bin\1\255", "\254\128 x"
    local bad = case("binary", { key = key, value = '{"n":1}', headers = { { name, value } } })
    assert.equal(hex(key), bad.key)
    assert.equal(hex(value), bad.headers[hex(name)])
  end)

  it("of duplicate header names the last wins", function()
    local bad = case("duplicate headers", { value = '{"n":1}',
      headers = { { "dup", "first" }, { "dup", "second" }, { "other", "x" } } })
    assert.same({ [hex("dup")] = hex("second"), [hex("other")] = hex("x") }, bad.headers)
  end)

  it("integers beyond 64 bits are a decode error, not a silent rounding", function()
    case("2^64", { value = '{"n":18446744073709551616}' })
    local _, log = case("huge integer", { value = '{"n":123456789012345678901234567890}' })
    dead_lettered("2^64", luka.output(), "too big integer")
    dead_lettered("huge integer", log, "too big integer")
  end)

  it("an array of 200,000 elements is handled", function()
    local items = {}
    for i = 1, 200000 do items[i] = tostring(i) end
    local bad = case("huge array", { value = "[" .. table.concat(items, ",") .. "]" })
    assert.equal(200000, bad.len)
  end)
end)

describe("bad handlers", function()
  it("a handler in an endless loop is stopped by the endpoint's timeout and dead-lettered", function()
    local _, log = case("loop", { value = '{"loop":true}' })
    local _, err = dead_lettered("loop", log, "timed out after 500 ms")
    assert.truthy(err:find("bad.lua:%d+: timed out"), "names where it was stopped: " .. err)
  end)

  it("errors raised with tables, nil or an object are reported sensibly", function()
    for kind, text in pairs({
      table = "error raised with a table value",
      message = "a table with a message field",
      ["nil"] = "error raised with a nil value",
      tostring = "an error object with __tostring",
    }) do
      local _, log = case("raise " .. kind, { value = ('{"raise":"%s"}'):format(kind) })
      dead_lettered("raise " .. kind, log, text)
    end
  end)

  it("luka never had to be restarted by any of these", function()
    assert.equal(1, started)
    assert.is_true(luka.alive())
  end)
end)

-- Runs `luka run APP` with args; returns H.run's result and the seconds it took.
local function run_app(app, args, timeout)
  local t0 = H.now()
  local r = H.run(("%s run %s %s"):format(H.luka, H.q(app), args or "--brokers 127.0.0.1:1"),
    { timeout = timeout or 30 })
  return r, H.now() - t0
end

local function script(body)
  return H.write_file(H.tmpdir() .. "/app.lua", 'local luka = require "luka"\n' .. body)
end

describe("bad app scripts", function()
  it("an error at load time names the file and line, and luka exits 1 at once", function()
    local r, took = run_app("spec/fixtures/bad_load_error.lua")
    assert.equal(1, r.code)
    assert.is_true(took < 5)
    assert.truthy(r.stderr:find("bad_load_error.lua:8: attempt to index a nil value (local 'settings')", 1, true),
      r.stderr)
  end)

  it("a script that never finishes loading is stopped after 10 s, naming the line of the loop", function()
    local r, took = run_app("spec/fixtures/bad_load_loop.lua")
    assert.equal(1, r.code)
    assert.is_true(took >= 9.5 and took < 20, ("stopped after %.1f s"):format(took))
    assert.truthy(r.stderr:find("timed out after 10000 ms", 1, true), r.stderr)
    assert.truthy(r.stderr:find("bad_load_loop.lua:7:", 1, true), "names the loop's line:\n" .. r.stderr)
  end)

  it("unknown and mistyped options are refused before anything connects, with file, line and a hint", function()
    for body, text in pairs({
      ['luka.consumer "c" { topic = { "t" }, handle = function() end }'] =
        "app.lua:2: consumer 'c': unknown option 'topic' (did you mean 'topics'?)",
      ['luka.consumer "c" { topics = { "t" }, retry = { instant = "two" }, handle = function() end }'] =
        "app.lua:2: consumer 'c': option 'retry': option 'instant' must be an integer >= 0, got string",
      ['luka.consumer "c" { topics = { "t" }, timeout = "5 seconds", handle = function() end }'] =
        "app.lua:2: consumer 'c': bad duration '5 seconds'",
      ['luka.consumer "c" { topics = "t", handle = function() end }'] =
        "app.lua:2: consumer 'c': option 'topics' must be a list of topic names, got string",
      ['luka.consumer "c" { topics = { "t" }, final_failure = "ignroe", handle = function() end }'] =
        "got 'ignroe' (did you mean 'ignore'?)",
      ['luka.consumer "c" { topics = { "t" }, config = { ["no.such.property"] = 1 }, handle = function() end }'] =
        'app.lua:2: consumer \'c\': config: No such configuration property: "no.such.property"',
      ['luka.consumer "c" { topics = { "t" }, config = { ["session.timeout.ms"] = "soon" }, handle = function() end }'] =
        "session.timeout.ms",
    }) do
      local r, took = run_app(script(body))
      assert.equal(1, r.code, body)
      assert.is_true(took < 5)
      assert.truthy(r.stderr:find(text, 1, true), ("for %s expected '%s' in:\n%s"):format(body, text, r.stderr))
    end
  end)

  it("unknown command-line options exit 2 with a hint", function()
    local r = H.run(H.luka .. " run spec/fixtures/bad.lua --bogus")
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("luka run: unknown option '--bogus'; run 'luka run --help'", 1, true), r.stderr)
    r = H.run(H.luka .. " run spec/fixtures/bad.lua --drain-timeout soon")
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("--drain-timeout takes a duration such as 500ms, 5s or 2m (a bare number is "
      .. "milliseconds), got 'soon'", 1, true), r.stderr)
  end)
end)

describe("a bad broker address", function()
  it("is named in a clear error, retried without crashing, and SIGTERM still exits promptly", function()
    local p = H.spawn(("%s run spec/fixtures/bad.lua --brokers no-such-host.invalid:9092"):format(H.luka),
      { env = { OUT = H.tmpdir() .. "/out", TOPIC = "t" } })
    p.wait_output("cannot reach the brokers at no%-such%-host%.invalid:9092", 10, "the error naming the address")
    H.sleep(5)
    assert.is_true(p.alive(), "still running and retrying:\n" .. p.output())
    assert.truthy(p.output():find("Failed to resolve 'no-such-host.invalid:9092'", 1, true), p.output())
    assert.truthy(p.output():find("luka keeps retrying", 1, true))
    local t0 = H.now()
    p.kill("TERM")
    assert.equal(0, p.wait(10), "exit code after SIGTERM")
    assert.is_true(H.now() - t0 < 5, "exits within 5 s")
  end)
end)
