-- Handler limits: a runaway handler is stopped by its endpoint's timeout,
-- a greedy one by the app's memory limit, and odd error values are
-- reported sensibly; each failure then follows the endpoint's policy.
local H = require "support.helper"

local function run(app, spec) return H.luka_test(app, spec, 60) end

describe("handler limits", function()
  it("stop a handler past its timeout, and one past the memory limit, and the host goes on", function()
    local r = run([[
local luka = require "luka"
luka.runtime { memory_limit = "32MB" }
luka.consumer "spin" { topics = { "t" }, timeout = "200ms", final_failure = "ignore",
  handle = function(msg) if msg.spin then while true do end end end }
luka.consumer "hog" { topics = { "t" }, final_failure = "ignore",
  handle = function(msg)
    if msg.hog then local t = {} for i = 1, 1e8 do t[i] = { i } end end
  end }
luka.consumer "odd" { topics = { "t" }, final_failure = "ignore", timeout = "300ms",
  handle = function(msg)
    if msg.kind == "table" then error({ message = "a table with a message" }) end
    if msg.kind == "plain" then error({ 1, 2 }) end
    if msg.kind == "nil" then error(nil) end
    if msg.kind == "pcall" then
      -- Catching the timeout buys no time: it is not an error.
      while true do pcall(function() while true do end end) end
    end
  end }
]], [[
local test = require "luka.test"
local app = test.load("app.lua")

it("times out", function()
  local t0 = os.clock()
  local r = app:deliver("spin", { spin = true })
  assert.equal("ignored", r.outcome)
  assert.matches("timed out after 200 ms", r.error)
  assert.equal("handled", app:deliver("spin", {}).outcome)
end)

it("runs out of memory without taking the host down", function()
  local r = app:deliver("hog", { hog = true })
  assert.equal("ignored", r.outcome)
  assert.matches("not enough memory", r.error)
  assert.equal("handled", app:deliver("hog", {}).outcome)
end)

it("stops a handler that catches errors in a loop", function()
  local r = app:deliver("odd", { kind = "pcall" })
  assert.matches("timed out after 300 ms", r.error)
end)

it("reports errors raised with tables and nil", function()
  assert.equal("a table with a message", app:deliver("odd", { kind = "table" }).error)
  assert.matches("error raised with a table value", app:deliver("odd", { kind = "plain" }).error)
  assert.equal("error raised with a nil value", app:deliver("odd", { kind = "nil" }).error)
end)
]])
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("4 successes / 0 failures / 0 errors", 1, true), r.stdout)
  end)
end)
