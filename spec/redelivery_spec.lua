-- A delayed retry that meets the rest of the world: a rebalance while the
-- message waits, and retention removing the message's offset meanwhile.
-- Either way the partition goes on: the message comes again when it still
-- exists, and what follows it is handled.  luka runs against `luka broker`
-- in its own process.
local H = require "support.helper"

local broker

-- The app: the message {"n": 1} fails its first handling, whatever
-- process or partition owner handles it next; a delayed retry of DELAY.
-- Every handling appends "n offset" to $OUT.
local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local failed
luka.consumer "c" { topics = { os.getenv("TOPIC") }, group = os.getenv("TOPIC"),
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000,
             ["heartbeat.interval.ms"] = 1000 },
  retry = { delayed = { initial = os.getenv("DELAY"), attempts = 3 } },
  handle = function(msg, meta)
    out:write(msg.n, " ", meta.offset, "\n")
    if msg.n == 1 and not failed then failed = true; error("not yet") end
  end }
]]

setup(function()
  broker = H.broker_start { topics = { "redeliver_rebalance:1", "redeliver_gone:1" } }
end)
teardown(function() broker.stop() end)

local function start(topic, delay)
  local dir = H.tmpdir()
  local path, out = H.write_file(dir .. "/app.lua", APP), dir .. "/out"
  local p = H.spawn(("%s run %s --brokers %s"):format(H.luka, path, broker.bootstrap),
    { env = { OUT = out, TOPIC = topic, DELAY = delay } })
  return p, out
end

-- The numbers handled so far, in order.
local function handled(out)
  local ns = {}
  for _, l in ipairs(H.read_lines(out)) do ns[#ns + 1] = tonumber(l:match("^(%d+)")) end
  return ns
end

local function count(list, x)
  local c = 0
  for _, v in ipairs(list) do if v == x then c = c + 1 end end
  return c
end

describe("a message waiting for its delayed retry", function()
  it("comes again after a rebalance hands its partition back, and its partition flows on", function()
    local topic = "redeliver_rebalance"
    H.kcat_produce(broker.bootstrap, topic, { '{"n":1}' })
    local p, out = start(topic, "60s")
    p.wait_output("retrying in", 30, "the first failure")
    -- Another member joins the group (it never commits) and leaves again:
    -- luka's partition is revoked, and assigned to it once more at the latest
    -- when the other member has left.
    local other = H.spawn(("kcat -b %s -G %s -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 "
      .. "-X enable.auto.commit=false -X auto.offset.reset=earliest -q %s"):format(broker.bootstrap,
      topic, topic))
    p.wait_output("revoked " .. topic, 30, "the rebalance")
    H.sleep(1)
    assert.equal(0, other.stop(20))
    H.wait_until(function()
      local _, n = p.output():gsub("assigned " .. topic .. "%[0%]", "")
      return n >= 2
    end, 30, "the partition assigned to luka again")
    H.kcat_produce(broker.bootstrap, topic, { '{"n":2}', '{"n":3}' })
    -- Well before the 60 s backoff: the revoke ended the wait.
    local ns = H.wait_until(function()
      local ns = handled(out)
      return count(ns, 1) == 2 and count(ns, 3) == 1 and ns
    end, 20, "message 1 again, then 2 and 3")
    assert.same({ 1, 1, 2, 3 }, ns)
    assert.equal(0, p.stop(20))
  end)

  it("goes on from the first offset still kept when retention removed it meanwhile", function()
    local topic = "redeliver_gone"
    H.kcat_produce(broker.bootstrap, topic, { '{"n":1}' })
    local p, out = start(topic, "8s")
    p.wait_output("retrying in", 30, "the first failure")
    -- The mock broker keeps 5 MiB per partition: 7 MiB pushes offset 0 out.
    local pad = string.rep("x", 1000)
    local msgs = {}
    for i = 1, 7000 do msgs[i] = ('{"n":%d,"pad":"%s"}'):format(i + 1, pad) end
    H.kcat_produce(broker.bootstrap, topic, msgs, { timeout = 60 })
    local r = H.run(("kcat -Q -b %s -t %s:0:-2"):format(H.q(broker.bootstrap), topic))
    local low = tonumber(r.stdout:match("offset (%d+)"))
    assert.is_true(low and low > 1, "retention removed the head: " .. r.stdout .. r.stderr)
    -- The retry finds offset 0 gone and goes on from the low watermark.
    H.wait_until(function() return count(handled(out), 7001) == 1 end, 40,
      "the last message handled")
    local lines = H.read_lines(out)
    assert.equal("1 0", lines[1])
    assert.truthy(lines[2]:match("^%d+ " .. low .. "$"), lines[2] .. " is the low watermark " .. low)
    assert.equal(7001 - low + 1, #lines, "each kept message once")
    assert.truthy(p.output():find(("offsets 0%%.%%.%d .*gone"):format(low - 1)), p.output())
    assert.equal(0, p.stop(20))
  end)
end)
