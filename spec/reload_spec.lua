-- Hot reload: under a steady stream, handler changes take effect between
-- two messages without leaving the group; a broken change keeps the old
-- code running; a topology change starts only the new endpoint.
local H = require "support.helper"

local broker

local function handler(version, broken)
  if broken then return ("return function(msg) record(%d msg.n) end\n"):format(version) end
  return ("return function(msg) record(%d, msg.n) end\n"):format(version)
end

-- A producer sending {"n": i} every 10 ms, keyed over 4 partitions.
local function stream(dir, topic, count)
  H.write_file(dir .. "/produce.sh", ([[
i=1
while [ $i -le %d ]; do echo "k$((i %% 4))|{\"n\":$i}"; i=$((i + 1)); sleep 0.01; done |
  kcat -P -b %s -t %s -K '|' -X linger.ms=1 -q
]]):format(count, broker.bootstrap, topic))
  return H.spawn("sh " .. dir .. "/produce.sh")
end

setup(function()
  broker = H.broker_start { topics = { "reload:4", "topo_a:1", "topo_b:1", "purge_in:1", "purge_out:1",
    "orphan_in:1", "orphan_out:1", "orphan_good:1" } }
end)
teardown(function() broker.stop() end)

describe("hot reload", function()
  it("swaps handlers under load: nothing lost, nothing twice, no rebalance, bad saves keep the old code", function()
    local dir = H.tmpdir()
    os.execute("mkdir -p " .. dir .. "/handlers")
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
function record(version, n) out:write(version, " ", n, "\n") end
luka.consumer "c" { topics = { "reload" }, handle = require "handlers.h",
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 } }
]])
    H.write_file(dir .. "/handlers/h.lua", handler(0))
    local out = dir .. "/out"
    local total = 1500
    local p = H.spawn(("%s run %s/app.lua --brokers %s --watch"):format(H.luka, dir, broker.bootstrap),
      { env = { OUT = out } })
    p.wait_output("assigned", 20, "the partition assignment")
    local producer = stream(dir, "reload", total)
    local function handled()
      local r = {}
      for i, l in ipairs(H.read_lines(out)) do
        local v, n = l:match("^(%d+) (%d+)$")
        r[i] = { tonumber(v), tonumber(n) }
      end
      return r
    end
    local function handled_by(version)
      local c = 0
      for _, r in ipairs(handled()) do if r[1] == version then c = c + 1 end end
      return c
    end
    local current, failures = 0, 0
    for version = 1, 10 do
      local broken = version % 3 == 0
      H.write_file(dir .. "/handlers/h.lua", handler(version, broken))
      if broken then
        failures = failures + 1
        H.wait_until(function() return select(2, p.output():gsub("reload failed", "")) == failures end,
          10, "reload " .. version .. " to fail")
        local before = handled_by(current)
        H.wait_until(function() return handled_by(current) > before + 3 end, 10,
          "the old code to keep handling after a bad save")
      else
        current = version
        H.wait_until(function() return handled_by(version) >= 3 end, 10,
          "messages handled by version " .. version)
      end
    end
    assert.equal(0, producer.wait(60), "the producer finished")
    H.wait_until(function() return #handled() >= total end, 30, total .. " messages")
    H.sleep(1)
    local log = p.output()
    assert.equal(0, p.stop())
    local seen, last_version = {}, 0
    for _, r in ipairs(handled()) do
      assert.is_nil(seen[r[2]], "message " .. r[2] .. " handled twice")
      seen[r[2]] = true
      assert.is_true(r[1] >= last_version, "after a reload no message runs the old code")
      last_version = r[1]
    end
    for n = 1, total do assert.is_true(seen[n], "message " .. n .. " lost") end
    assert.is_nil(log:find("revoked", 1, true), "no partition was revoked")
    assert.equal(1, select(2, log:gsub("assigned", "")), "assigned once")
    assert.equal(7, select(2, log:gsub("reload: reloaded ", "")))
    assert.equal(3, select(2, log:gsub("reload failed", "")))
    assert.truthy(log:find("h.lua:1:", 1, true), "the error names the file and line")
    for _, v in ipairs { 1, 2, 4, 5, 7, 8, 10 } do assert.is_true(handled_by(v) > 0) end
  end)

  it("starts an endpoint added by a reload, and SIGHUP reloads without --watch", function()
    local dir = H.tmpdir()
    local app = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
luka.consumer "a" { topics = { "topo_a" }, config = config, handle = function(m) out:write("a ", m.n, "\n") end }
]]
    H.write_file(dir .. "/app.lua", app)
    local out = dir .. "/out"
    local p = H.spawn(("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap),
      { env = { OUT = out } })
    H.kcat_produce(broker.bootstrap, "topo_a", { '{"n":1}' })
    H.kcat_produce(broker.bootstrap, "topo_b", { '{"n":2}' })
    H.wait_until(function() return H.read_lines(out)[1] end, 20, "endpoint a")
    H.write_file(dir .. "/app.lua", app .. [[
luka.consumer "b" { topics = { "topo_b" }, config = config, handle = function(m) out:write("b ", m.n, "\n") end }
]])
    p.kill("HUP")
    H.wait_until(function() return H.read_lines(out)[2] end, 20, "the new endpoint b")
    assert.equal(0, p.stop())
    local log = p.output()
    assert.same({ "a 1", "b 2" }, H.read_lines(out))
    assert.truthy(log:find("1 endpoint(s) kept, 1 started, 0 stopped", 1, true), log)
    local _, revoked_a = log:gsub("%[a%] revoked", "")
    assert.equal(1, revoked_a, "endpoint a was revoked only at shutdown")
  end)

  -- An app whose publisher "out" reaches no broker (its messages wait in
  -- its queue) until the second version points it at the real one.
  local function unreachable_app(version, body)
    return ([[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(...) out:write(luka.json.encode({ ... }), "\n") end
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
local version = %d
]]):format(version) .. body
  end

  local function recorded(out, what)
    for _, l in ipairs(H.read_lines(out)) do
      if l == what then return true end
    end
  end

  it("fails a publish purged by a publisher's config change into the policies, and the partition commits again", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local consumer = [[
luka.consumer "c" { topics = { "purge_in" }, group = "purge", config = config,
  retry = { delayed = { initial = "200ms", attempts = 3 } },
  handle = function(msg) record(version, msg.n); luka.publish("out", msg) end }
]]
    H.write_file(dir .. "/app.lua", unreachable_app(1, [[
luka.publisher "out" { topic = "purge_out", config = { ["bootstrap.servers"] = "127.0.0.1:1" } }
]] .. consumer))
    local function start()
      return H.spawn(("%s run %s/app.lua --brokers %s --drain-timeout 1000"):format(H.luka, dir,
        broker.bootstrap), { env = { OUT = out } })
    end
    local p = start()
    H.kcat_produce(broker.bootstrap, "purge_in", { '{"n":1}' })
    H.wait_until(function() return recorded(out, "[1,1]") end, 20, "message 1 handled")
    H.write_file(dir .. "/app.lua", unreachable_app(2, [[
luka.publisher "out" { topic = "purge_out" }
]] .. consumer))
    p.kill("HUP")
    p.wait_output("reload: reloaded", 20, "the reload")
    -- Its output was purged with the old producer: the message comes again.
    H.wait_until(function() return recorded(out, "[2,1]") end, 20,
      "message 1 delivered again after its publish was purged")
    local d = H.kcat_consume(broker.bootstrap, "purge_out", 1, { timeout = 20 })
    assert.equal('{"n":1}', d[1] and d[1].value)
    H.kcat_produce(broker.bootstrap, "purge_in", { '{"n":2}' })
    H.wait_until(function() return recorded(out, "[2,2]") end, 20, "message 2 handled")
    local log = p.output()
    assert.equal(0, p.stop(), log)
    -- Both were committed: a restart hands neither again.
    local handled = #H.read_lines(out)
    p = start()
    p.wait_output("assigned", 20, "the partition assignment")
    H.sleep(3)
    assert.equal(0, p.stop())
    assert.equal(handled, #H.read_lines(out), "nothing handled again after the restart")
  end)

  it("keeps the records of a stopped endpoint alive until their publishes are reported", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local publishers = [[
luka.publisher "out" { topic = "orphan_out",
  config = { ["bootstrap.servers"] = "127.0.0.1:1", ["message.timeout.ms"] = 4000 } }
luka.publisher "good" { topic = "orphan_good" }
]]
    H.write_file(dir .. "/app.lua", unreachable_app(1, publishers .. [[
luka.consumer "c" { topics = { "orphan_in" }, group = "orphan1", config = config,
  handle = function(msg) record(version, msg.n); luka.publish("out", msg) end }
]]))
    local p = H.spawn(("%s run %s/app.lua --brokers %s --drain-timeout 1000"):format(H.luka, dir,
      broker.bootstrap), { env = { OUT = out } })
    H.kcat_produce(broker.bootstrap, "orphan_in", { '{"n":1}' })
    H.wait_until(function() return recorded(out, "[1,1]") end, 20, "message 1 handled")
    -- A new group: the old endpoint stops while its message waits for "out".
    H.write_file(dir .. "/app.lua", unreachable_app(2, publishers .. [[
luka.consumer "c" { topics = { "orphan_in" }, group = "orphan2", config = config,
  handle = function(msg) record(version, msg.n); luka.publish("good", msg) end }
]]))
    p.kill("HUP")
    p.wait_output("1 started, 1 stopped", 20, "the reload")
    H.wait_until(function() return recorded(out, "[2,1]") end, 20, "message 1 handled by the new group")
    -- The old publish times out now, with its record's endpoint gone.
    p.wait_output("delivery to orphan_out failed", 20, "the old publish's report")
    H.sleep(1)
    local log = p.output()
    assert.is_true(p.alive(), log)
    assert.equal(0, p.stop(), log)
    log = p.output()
    assert.falsy(log:find("handler failed", 1, true), log)
    assert.falsy(log:find("final failure", 1, true), log)
    assert.falsy(log:find("AddressSanitizer", 1, true), log)
  end)
end)
