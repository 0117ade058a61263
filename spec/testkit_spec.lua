-- The handler test kit: `luka test` runs busted specs in which
-- require "luka.test" loads an app and delivers messages to it, through
-- the production pipeline, with no broker.
local H = require "support.helper"

local function luka_test(dir, spec)
  H.write_file(dir .. "/x_spec.lua", spec)
  return H.run(("cd %s && %s test ."):format(H.q(dir), H.luka))
end

describe("luka test", function()
  it("runs the example app's handler specs", function()
    local r = H.run(H.luka .. " test config/spec")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("11 successes / 0 failures / 0 errors", 1, true), r.stdout)
  end)

  it("exits non-zero and shows busted's report when a spec fails", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, handle = function(msg) assert(msg.ok, "not ok") end }
]])
    local r = luka_test(dir, [[
local test = require "luka.test"
it("fails", function()
  local app = test.load("app.lua")
  assert.equal("handled", app:deliver("c", { ok = false }).outcome)
end)
]])
    assert.is_not.equal(0, r.code)
    assert.truthy(r.stdout:find("0 successes / 1 failure", 1, true), r.stdout)
  end)

  it("delivers any payload and meta, and reports attempts, retries, publishes and commits", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.publisher "out" { key = "id" }
luka.consumer "c" { topics = { "in" }, retry = { instant = 1, delayed = { initial = "250ms", attempts = 2 } },
  final_failure = "ignore",
  handle = function(msg, meta)
    if msg.fail then error("failing on attempt " .. meta.attempt) end
    luka.publish("out", { id = msg.id, seen = { topic = meta.topic, partition = meta.partition,
      key = meta.key, trace = meta.headers.trace, attempt = meta.attempt } }, { headers = { h = "v" } })
  end }
]])
    local r = luka_test(dir, [[
local test = require "luka.test"
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("handles and publishes", function()
  local r = app:deliver("c", { id = "a-1" }, { topic = "in", partition = 3, key = "k", headers = { trace = "t" }, attempt = 2 })
  assert.equal("handled", r.outcome)
  assert.is_true(r.committed)
  local p = r.published[1]
  assert.equal("out", p.target)
  assert.equal("out", p.topic)
  assert.equal("a-1", p.key)
  assert.equal("v", p.headers.h)
  assert.same({ topic = "in", partition = 3, key = "k", trace = "t", attempt = 2 }, p.payload.seen)
end)

it("retries, then applies the final failure strategy", function()
  local r = app:deliver("c", { fail = true })
  assert.equal("ignored", r.outcome)
  assert.equal(6, r.attempts)
  assert.same({ 250, 500 }, r.retries)
  assert.matches("failing on attempt 6", r.error)
  assert.is_true(r.committed)
  assert.equal(1, app:counters("c").failed > 0 and 1 or 0)
end)

it("sends raw strings and tombstones", function()
  assert.equal("ignored", app:deliver("c", "not json").outcome)
  assert.equal("ignored", app:deliver("c", nil).outcome)
end)

it("names the endpoints when asked for an unknown one", function()
  assert.has_error(function() app:deliver("nope", {}) end, "deliver: the app has no endpoint 'nope'; it has: c")
end)
]])
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("4 successes / 0 failures / 0 errors", 1, true), r.stdout)
  end)

  it("publishes floats with the fewest digits that read back as the same number", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, handle = function(msg) luka.publish("out", msg) end }
]])
    local r = luka_test(dir, [[
local test = require "luka.test"
local cases = {
  { { 0.1, 19.99, 2.0, -2.5, 1e21 }, "[0.1,19.99,2.0,-2.5,1e21]" },
  { { 1 / 3 }, "[0.3333333333333333]" },
  { { 0.1 + 0.2 }, "[0.30000000000000004]" },
  -- One precision serves a whole message: the float that needs most.
  { { 0.1, 0.1 + 0.2 }, "[0.10000000000000001,0.30000000000000004]" },
  { { 1, 2 }, "[1,2]" },
}
for _, c in ipairs(cases) do
  it(c[2], function()
    local app = test.load("app.lua")
    local p = app:deliver("c", test.json.array(c[1])).published[1]
    assert.equal(c[2], p.value)
    assert.same(c[1], p.payload)
    assert.equal(c[2], test.json.encode(test.json.array(c[1])))
    app:close()
  end)
end
]])
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("5 successes / 0 failures / 0 errors", 1, true), r.stdout)
  end)

  it("reports a runner that cannot be loaded with its message alone", function()
    -- Loading the runner's chunk fails only out of memory; a preloaded
    -- shim (fixtures/failing_load.c) makes it fail on purpose.  The report
    -- once went on to print a traceback that no call had filled in.
    local dir = H.tmpdir()
    local r = H.run(("cc -shared -fPIC $(pkg-config --cflags lua5.4) -o %s/failing_load.so %s -ldl")
      :format(H.q(dir), H.q(H.root .. "/spec/fixtures/failing_load.c")))
    assert.equal(0, r.code, r.stderr)
    r = H.run(("cd %s && LD_PRELOAD=%s/failing_load.so %s test ."):format(H.q(dir), H.q(dir), H.luka))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.equal("luka test: not enough memory (injected)\n", r.stderr)
  end)
  it("names the package to install when busted is missing, instead of a module-not-found wall", function()
    local dir = H.tmpdir()
    local r = H.run(("cd %s && LUA_PATH_5_4='/nonexistent/?.lua' %s test ."):format(H.q(dir), H.luka))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("luka test: busted is not installed", 1, true), r.stderr)
    assert.truthy(r.stderr:find("apt-get install lua-busted", 1, true), r.stderr)
    assert.truthy(r.stderr:find("scripts/setup test", 1, true), r.stderr)
    assert.falsy(r.stderr:find("module 'busted.runner' not found", 1, true), r.stderr)
  end)

  it("keeps the app's print out of busted's report: junit on stdout stays XML", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
print("loading the app")
luka.consumer "c" { topics = { "t" }, handle = function(msg) print("handling", msg.n); io.write("raw write\n") end }
]])
    H.write_file(dir .. "/x_spec.lua", [[
local test = require "luka.test"
it("handles", function()
  local app = test.load("app.lua")
  assert.equal("handled", app:deliver("c", { n = 7 }).outcome)
  app:close()
end)
]])
    local r = H.run(("cd %s && %s test . -o junit"):format(H.q(dir), H.luka))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:match("^%s*<testsuites"), r.stdout)
    assert.truthy(r.stdout:match("</testsuites>%s*$"), r.stdout)
    assert.falsy(r.stdout:find("handling", 1, true), r.stdout)
    assert.falsy(r.stdout:find("loading the app", 1, true), r.stdout)
    assert.falsy(r.stdout:find("raw write", 1, true), r.stdout)
    assert.truthy(r.stderr:find("loading the app\n", 1, true), r.stderr)
    assert.truthy(r.stderr:find("handling\t7\n", 1, true), r.stderr)
    assert.truthy(r.stderr:find("raw write\n", 1, true), r.stderr)
  end)
  describe("test.load", function()
    local function app_with(name)
      return ('local luka = require "luka"\nluka.consumer %q { topics = { "t" }, handle = function() end }\n'):format(name)
    end
    local spec = [[
local test = require "luka.test"
it("loads", function()
  local app = test.load(APP)
  assert.equal(0, app:counters(NAME).consumed)
  app:close()
end)
]]
    local function write_spec(path, app, name)
      H.write_file(path, spec:gsub("APP", ("%q"):format(app)):gsub("NAME", ("%q"):format(name)))
    end

    it("finds the app beside the spec file first, whatever the current directory", function()
      local dir = H.tmpdir()
      os.execute("mkdir -p " .. H.q(dir .. "/shop/spec"))
      H.write_file(dir .. "/shop/spec/app.lua", app_with("near"))
      H.write_file(dir .. "/shop/app.lua", app_with("root"))
      write_spec(dir .. "/shop/spec/near_spec.lua", "app.lua", "near")
      local r = H.run(("cd %s && %s test shop/spec"):format(H.q(dir), H.luka))
      H.assert_luka_test_passed(r, 1)
      r = H.run(("cd %s && %s test spec"):format(H.q(dir .. "/shop"), H.luka))
      H.assert_luka_test_passed(r, 1)
    end)

    it("then in the current directory, the project root", function()
      local dir = H.tmpdir()
      os.execute("mkdir -p " .. H.q(dir .. "/config/spec"))
      H.write_file(dir .. "/config/orders.lua", app_with("orders"))
      write_spec(dir .. "/config/spec/orders_spec.lua", "config/orders.lua", "orders")
      H.assert_luka_test_passed(H.run(("cd %s && %s test config/spec"):format(H.q(dir), H.luka)), 1)
    end)

    it("sets environment variables while the script loads, and only then", function()
      local dir = H.tmpdir()
      H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local url, home = os.getenv("LUKA_TEST_URL"), os.getenv("HOME")
luka.publisher "out" {}
luka.consumer "c" { topics = { "t" }, handle = function()
  luka.publish("out", { at_load = url, home = home or "unset", now = os.getenv("LUKA_TEST_URL") or "unset" })
end }
]])
      H.write_file(dir .. "/x_spec.lua", [[
local test = require "luka.test"
it("loads with the variables", function()
  local home = os.getenv("HOME")
  local app = test.load("app.lua", { env = { LUKA_TEST_URL = "http://127.0.0.1:1", HOME = false } })
  assert.same({ at_load = "http://127.0.0.1:1", home = "unset", now = "unset" },
    app:deliver("c", {}).published[1].payload)
  assert.equal(home, os.getenv("HOME"))
  assert.is_nil(os.getenv("LUKA_TEST_URL"))
  app:close()
end)
it("refuses a value that is not a string or false", function()
  assert.has_error(function() test.load("app.lua", { env = { X = 1 } }) end,
    'luka.test.load: opts.env: give NAME = "value" or NAME = false')
end)
]])
      H.assert_luka_test_passed(H.run(("cd %s && %s test ."):format(H.q(dir), H.luka)), 2)
    end)

    it("names both places when neither has the app", function()
      local dir = H.tmpdir()
      os.execute("mkdir -p " .. H.q(dir .. "/spec"))
      H.write_file(dir .. "/spec/x_spec.lua", [[
local test = require "luka.test"
it("fails to load", function()
  assert.has_error(function() test.load("nowhere.lua") end,
    "luka.test.load: no app script 'nowhere.lua' beside ./spec/x_spec.lua or in the current directory")
end)
]])
      H.assert_luka_test_passed(H.run(("cd %s && %s test ./spec"):format(H.q(dir), H.luka)), 1)
    end)
  end)

  it("runs the app's timers on a virtual clock with app:advance, in order, through the production call", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.runtime { timeout = "200ms" }
luka.publisher "ticks" {}
local n = 0
luka.consumer "c" { topics = { "t" }, handle = function(msg)
  luka.after(msg.after, function() luka.publish("ticks", { kind = "from handler" }) end)
end }
luka.every("1s", function() n = n + 1; luka.publish("ticks", { kind = "every", n = n }) end)
luka.after("2500ms", function() luka.publish("ticks", { kind = "after" }) end)
luka.every("10s", function() error("tick failed") end)
local stuck = luka.every("12s", function() while true do end end)
luka.every("12s", function() stuck:stop() end)
]])
    H.write_file(dir .. "/x_spec.lua", [[
local test = require "luka.test"
local function kinds(r)
  local out = {}
  for i, p in ipairs(r.published) do out[i] = p.payload.kind .. (p.payload.n and (" " .. p.payload.n) or "") end
  return out
end
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("fires nothing before its time", function()
  local r = app:advance("999ms")
  assert.same({ fired = 0, errors = {}, published = {}, now = 999 }, r)
end)

it("fires each timer when due, repeating ones once per interval, in due order", function()
  assert.same({ "every 1" }, kinds(app:advance(1000)))
  assert.same({ "every 2", "after", "every 3" }, kinds(app:advance("2s")))
  local r = app:advance("7s")
  assert.same({ "every 4", "every 5", "every 6", "every 7", "every 8", "every 9", "every 10" }, kinds(r))
  assert.equal(8, r.fired)
  assert.equal(10000, r.now)
  assert.equal(1, #r.errors)
  assert.matches("app.lua:10: tick failed", r.errors[1])
end)

it("runs timers under the app's runtime timeout, and a callback may stop another", function()
  local r = app:advance("12s")
  assert.equal(1 + 12 + 1 + 1 + 1, r.fired)
  assert.equal(2, #r.errors)
  assert.matches("timed out", r.errors[2])
  r = app:advance("12s")
  assert.equal(12 + 1 + 1, r.fired) -- the stuck timer was stopped
  assert.equal(1, #r.errors)
end)

it("runs timers a handler made, from the clock's present", function()
  app:advance("500ms")
  app:deliver("c", { after = "1s" })
  assert.same({}, kinds(app:advance("499ms")))
  assert.same({ "every 1" }, kinds(app:advance(1)))
  assert.same({}, kinds(app:advance("499ms")))
  assert.same({ "from handler" }, kinds(app:advance(1)))
end)

it("refuses a bad interval", function()
  assert.has_error(function() app:advance("soon") end)
end)
]])
    local r = H.run(("cd %s && %s test ."):format(H.q(dir), H.luka), { timeout = 60 })
    H.assert_luka_test_passed(r, 5)
  end)
  it("repeats instant retries in every delayed round: (1 + instant) x (1 + attempts) calls", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local function failing() error("no") end
luka.consumer "a" { topics = { "a" }, retry = { instant = 1, delayed = { initial = "1s", attempts = 3 } },
  final_failure = "ignore", handle = failing }
luka.consumer "b" { topics = { "b" }, retry = { instant = 2, delayed = { initial = "1s", attempts = 2 } },
  final_failure = "ignore", handle = failing }
luka.consumer "c" { topics = { "c" }, retry = { instant = 3 }, final_failure = "ignore", handle = failing }
]])
    H.write_file(dir .. "/x_spec.lua", [[
local test = require "luka.test"
it("counts the calls", function()
  local app = test.load("app.lua")
  local r = app:deliver("a", {})
  assert.equal(8, r.attempts)           -- (1 + 1) x (1 + 3)
  assert.same({ 1000, 2000, 4000 }, r.retries)
  assert.equal(9, app:deliver("b", {}).attempts)  -- (1 + 2) x (1 + 2)
  assert.equal(4, app:deliver("c", {}).attempts)  -- (1 + 3) x 1
  app:close()
end)
]])
    H.assert_luka_test_passed(H.run(("cd %s && %s test ."):format(H.q(dir), H.luka)), 1)
  end)
end)
