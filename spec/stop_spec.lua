-- final_failure = "stop" stops only the endpoint whose message failed: it
-- leaves its group uncommitted, shows as stopped in /readyz, a metric and
-- the log, while the other endpoints keep serving; luka exits 3 once no
-- endpoint is left serving.
local H = require "support.helper"

local broker

setup(function() broker = H.broker_start { topics = { "stop_audit:1", "stop_orders:1" } } end)
teardown(function() broker.stop() end)

local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
luka.consumer "audit" { topics = { "stop_audit" }, config = config, final_failure = "stop",
  handle = function(msg)
    if msg.poison then error("cannot audit this") end
    out:write('["audit",', msg.n, ']\n')
  end }
luka.consumer "orders" { topics = { "stop_orders" }, config = config, final_failure = "stop",
  handle = function(msg)
    if msg.poison then error("cannot take this order") end
    out:write('["orders",', msg.n, ']\n')
  end }
]]

local function handled(out, endpoint, n)
  for _, r in ipairs(H.jsonl(out)) do
    if r[1] == endpoint and r[2] == n then return true end
  end
end

describe("final_failure = stop", function()
  it("stops only its endpoint, which leaves its group, while the others keep serving; the last one exits 3", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.write_file(dir .. "/app.lua", APP)
    local port = H.free_port()
    local p = H.spawn(("%s run %s/app.lua --brokers %s --http 127.0.0.1:%d"):format(H.luka, dir,
      broker.bootstrap, port), { env = { OUT = out } })
    H.kcat_produce(broker.bootstrap, "stop_audit", { '{"n":1}', '{"poison":true}', '{"n":2}' })
    H.kcat_produce(broker.bootstrap, "stop_orders", { '{"n":1}' })
    H.wait_until(function() return handled(out, "orders", 1) and handled(out, "audit", 1) end, 30,
      "both endpoints to handle their first message")
    p.wait_output("%[audit%] stopped by its final failure: it leaves group audit", 20, "audit's stop")
    p.wait_output("%[audit%] left group audit", 20, "audit to leave its group")

    -- The other endpoint keeps serving, in the same process.
    H.kcat_produce(broker.bootstrap, "stop_orders", { '{"n":2}', '{"n":3}' })
    H.wait_until(function() return handled(out, "orders", 3) end, 20, "orders to go on")
    assert.is_true(p.alive())
    assert.is_nil(handled(out, "audit", 2), "audit handled past its poison message")

    -- Shown where operators look.
    local body = H.wait_until(function()
      local r = H.run(("curl -s --max-time 3 http://127.0.0.1:%d/readyz"):format(port))
      return r.stdout:find('"stopped":["audit"]', 1, true) and r.stdout
    end, 10, "/readyz to name the stopped endpoint")
    assert.truthy(body:find('"ready":true', 1, true), body)
    local metrics = H.run(("curl -s --max-time 3 http://127.0.0.1:%d/metrics"):format(port)).stdout
    assert.truthy(metrics:find('luka_endpoint_stopped{endpoint="audit",group="audit"} 1', 1, true), metrics)
    assert.truthy(metrics:find('luka_endpoint_stopped{endpoint="orders",group="orders"} 0', 1, true), metrics)

    -- The last serving endpoint stops too: the process exits 3.
    H.kcat_produce(broker.bootstrap, "stop_orders", { '{"poison":true}' })
    assert.equal(3, p.wait(30))

    -- Nothing past a poison message was committed: a restart brings it back.
    local again = H.spawn(("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap),
      { env = { OUT = out } })
    assert.equal(3, again.wait(60))
    assert.truthy(again.output():find("stop_audit[0]@1 handler failed", 1, true), again.output())
  end)
end)
