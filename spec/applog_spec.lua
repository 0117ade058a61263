-- luka.log and print: the app's own log lines go through luka's logger
-- with the context of the message being handled (or of the app alone),
-- fields as JSON fields or key=value, a traceback apart; the test kit
-- captures them.
local H = require "support.helper"

local broker
local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

setup(function() broker = H.broker_start { topics = { "log_json:1", "log_text:1" } } end)
teardown(function() broker.stop() end)

-- Produce one payment to topic and run the fixture on it with args;
-- returns the process, whose stdout and stderr are apart.
local function run(topic, args)
  H.kcat_produce(broker.bootstrap, topic, { {
    key = "cust-7", value = '{"amount":12.5,"items":["a","b"]}',
    headers = { id = "pay-1", traceparent = "00-" .. TRACE .. "-00f067aa0ba902b7-01" } } })
  local dir = H.tmpdir()
  return H.spawn(("%s run spec/fixtures/applog.lua --brokers %s %s"):format(H.luka,
    broker.bootstrap, args), { env = { TOPIC = topic }, stdout = dir .. "/stdout",
    stderr = dir .. "/stderr" })
end

describe("luka.log", function()
  it("writes JSON lines with the message's context, fields as JSON fields and the traceback apart", function()
    local p = run("log_json", "--log-format json")
    p.wait_output('"message":"timer fired"', 20, "the timer's line")
    p.wait_output('"component":"print"', 20, "the handler's print")
    assert.equal(0, p.stop())
    local by = {}
    for line in H.read_file(p.stderr_path):gmatch("[^\n]+") do
      local ok, j = pcall(H.json_decode, line)
      assert.is_true(ok, "not JSON: " .. line)
      by[j.message] = j
    end
    assert.equal("", H.read_file(p.stdout_path), "print went to the log")

    local c = by.charged
    assert.same({ "info", "app", "applog", "payments", "log_json", "log_json", 0, 0, "cust-7", "pay-1", TRACE },
      { c.level, c.component, c.app, c.endpoint, c.group, c.topic, c.partition, c.offset, c.key,
        c.message_id, c.trace_id })
    assert.equal(12.5, c.amount)
    assert.equal("EUR", c.currency)
    assert.equal("two words", c.note)
    assert.same({ "a", "b" }, c.items)
    assert.equal(TRACE, c.seen_trace, "meta.trace_id is the input's trace")

    local f = by["charge failed"]
    assert.equal("error", f.level)
    assert.truthy(f.err:match("applog%.lua:%d+: card declined$"), f.err)
    assert.truthy(f.traceback:match("^stack traceback:\n\t"), f.traceback)
    assert.equal(TRACE, f.trace_id)
    assert.is_nil(by.details, "debug is below the level")

    local pr = by["printed\t12.5"]
    assert.same({ "info", "print", "payments", 0 }, { pr.level, pr.component, pr.endpoint, pr.offset })

    -- Outside a handler the context is the app alone.
    for _, m in ipairs({ "loading", "timer fired" }) do
      assert.equal("applog", by[m].app)
      assert.is_nil(by[m].endpoint)
      assert.is_nil(by[m].topic)
      assert.is_nil(by[m].trace_id)
    end
    assert.equal(3, by.loading.version)
    assert.equal(true, by["timer fired"].ok)
  end)

  it("writes key=value after the message in text, the traceback on the lines after, and print as it is", function()
    local p = run("log_text", "")
    p.wait_output("timer fired", 20, "the timer's line")
    p.wait_output("printed", 20, "the handler's print")
    assert.equal(0, p.stop())
    local log = H.read_file(p.stderr_path)
    local line = log:match("[^\n]*charged[^\n]*")
    assert.truthy(line:match("^%S+ info  app: %[payments%] log_text%[0%]@0 charged " ..
      'amount=12%.5 currency=EUR items=%["a","b"%] note="two words" seen_trace=' .. TRACE .. "$"), line)
    assert.truthy(log:match('error app: %[payments%] log_text%[0%]@0 charge failed err="[^"\n]*card declined"\n' ..
      "stack traceback:\n\t"), log)
    assert.truthy(log:match("warn  app: timer fired ok=true\n"), log)
    assert.truthy(log:match("info  app: loading version=3\n"), log)
    assert.equal("printed\t12.5\n", H.read_file(p.stdout_path))
  end)

  it("is captured by the test kit: app:logs() since load and deliver's logs for the message", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.log.info("loaded")
luka.consumer "c" { topics = { "in" }, group = "g", final_failure = "ignore",
  handle = function(msg, meta)
    if msg.bad == "msg" then luka.log.info(42) end
    if msg.bad == "fields" then luka.log.warn("x", "y") end
    if msg.fail then error("boom") end
    local t = {}
    t.me = t
    luka.log.info("handled", { n = msg.n, nested = { list = luka.json.array {} }, fn = print, loop = t,
      api_token = "s3cr3t-value", traceback = "stack traceback:\n\tsomewhere" })
    luka.log.debug("quiet", { n = msg.n })
  end }
luka.every("1s", function() luka.log.warn("tick") end)
]], [[
local test = require "luka.test"
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("keeps what the handler logged, with its context", function()
  local r = app:deliver("c", { n = 1 }, { key = "k", offset = 7, headers = { id = "m-1",
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } })
  assert.equal(2, #r.logs)
  local l = r.logs[1]
  assert.same({ "info", "app", "handled" }, { l.level, l.component, l.msg })
  assert.same({ app = "app", endpoint = "c", group = "g", topic = "in", partition = 0, offset = 7,
    key = "k", id = "m-1", trace_id = "0af7651916cd43dd8448eb211c80319c" }, l.context)
  assert.equal(1, l.fields.n)
  assert.same({ list = {} }, l.fields.nested)
  assert.matches("^function: ", l.fields.fn)
  assert.matches("%(a cycle%)$", l.fields.loop.me)
  assert.equal("********", l.fields.api_token)
  assert.is_nil(l.fields.traceback)
  assert.equal("stack traceback:\n\tsomewhere", l.traceback)
  assert.same({ "debug", "quiet" }, { r.logs[2].level, r.logs[2].msg }, "every level is kept")
end)

it("keeps luka's own lines about the message, and what the app logged at load and in timers", function()
  local r = app:deliver("c", { fail = true })
  local own
  for _, l in ipairs(r.logs) do if l.msg:find("handler failed", 1, true) then own = l end end
  assert.same({ "error", "policy" }, { own.level, own.component })
  assert.matches("handler failed %(attempt 1%): .*boom", own.msg)
  assert.matches("^stack traceback:", own.traceback)
  assert.equal(32, #own.context.trace_id)
  app:advance("1s")
  local all = app:logs()
  assert.same({ "loaded", { app = "app" } }, { all[1].msg, all[1].context })
  assert.same({ "tick", { app = "app" } }, { all[#all].msg, all[#all].context })
end)

it("gives each message of deliver_all the lines about it", function()
  local rs = app:deliver_all("c", { { { n = 1 } }, { { n = 2 } } })
  assert.same({ 1, 1 }, { rs[1].logs[1].fields.n, rs[2].logs[1].fields.n - 1 })
  assert.same({ 2, 2 }, { #rs[1].logs, #rs[2].logs })
end)

it("refuses a msg that is not a string and fields that are not a table", function()
  assert.matches("luka.log.info: msg must be a string, got number", app:deliver("c", { bad = "msg" }).error)
  assert.matches("luka.log.warn: fields must be a table, got string", app:deliver("c", { bad = "fields" }).error)
end)
]])
    H.assert_luka_test_passed(r, 4)
  end)
end)
