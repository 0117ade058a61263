-- The loop turns between messages: while slow handlers work through a long
-- queue, a signal is seen after the handler call under way, a second signal
-- exits at once even while a handler still runs, and /healthz stays 200.
-- luka runs against `luka broker` in its own process; the handlers spin on
-- the wall clock for SPIN seconds per message.
local H = require "support.helper"

local broker

local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local spin = tonumber(os.getenv("SPIN"))
luka.consumer "slow" { topics = { os.getenv("TOPIC") }, group = os.getenv("TOPIC"),
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 },
  handle = function(msg, meta)
    out:write(meta.offset, "\n")
    local until_t = luka.now() + spin
    while luka.now() < until_t do end
  end }
]]

setup(function()
  broker = H.broker_start { topics = { "loop_term:1", "loop_twice:1", "loop_health:1" } }
end)
teardown(function() broker.stop() end)

-- Puts n small messages on topic and starts luka on it with SPIN seconds
-- per message, (optionally) serving HTTP on port.  Returns the process and
-- the file the handler appends each offset to.
local function start(topic, n, spin, port)
  local dir = H.tmpdir()
  local msgs = {}
  for i = 1, n do msgs[i] = ('{"n":%d}'):format(i) end
  H.kcat_produce(broker.bootstrap, topic, msgs)
  local path, out = H.write_file(dir .. "/app.lua", APP), dir .. "/out"
  local http = port and (" --http 127.0.0.1:" .. port) or ""
  local p = H.spawn(("%s run %s --brokers %s%s"):format(H.luka, path, broker.bootstrap, http),
    { env = { OUT = out, TOPIC = topic, SPIN = tostring(spin) } })
  return p, out
end

describe("a queue of slow messages", function()
  it("lets a SIGTERM stop luka after the handler call under way, not after the whole batch", function()
    -- 1 s per message and 40 queued: a loop that looked at the clock only
    -- every 16 messages saw the signal some 14 s later.
    local p, out = start("loop_term", 40, 1)
    H.wait_until(function() return #H.read_lines(out) >= 1 end, 30, "the first handler call")
    local t0 = H.now()
    -- Counted when the signal goes: a loaded machine may keep this spec
    -- from sending it for a while after it saw the first call.
    local started = #H.read_lines(out)
    assert.is_true(p.kill("TERM"))
    local code = p.wait(20)
    local took = H.now() - t0
    assert.equal(0, code, p.output())
    assert.is_true(took < 8, ("exited %.1f s after SIGTERM (1 s handlers):\n%s"):format(took, p.output()))
    local n = #H.read_lines(out)
    assert.is_true(n <= started + 1, ("%d calls started, %d when the signal was sent: at most the "
      .. "call under way then, and one the loop began before it saw the signal"):format(n, started))
  end)

  it("exits at once on a second signal while a handler still runs, and says so", function()
    local p, out = start("loop_twice", 3, 15)
    H.wait_until(function() return #H.read_lines(out) >= 1 end, 30, "the first handler call")
    assert.is_true(p.kill("TERM"))
    H.sleep(0.5)
    local t0 = H.now()
    assert.is_true(p.kill("INT"))
    local code = p.wait(20)
    local took = H.now() - t0
    assert.equal(128 + 2, code, p.output())
    assert.is_true(took < 3, ("exited %.1f s after the second signal:\n%s"):format(took, p.output()))
    assert.truthy(p.output():find("second signal", 1, true), p.output())
  end)

  it("keeps /healthz at 200 while 500 ms handlers work through the queue", function()
    local port = H.free_port()
    local p, out = start("loop_health", 40, 0.5, port)
    H.wait_until(function() return #H.read_lines(out) >= 1 end, 30, "the first handler call")
    -- A loop that turned only every 16 messages (8 s) answered 503 once its
    -- heartbeat was 5 s old.
    local deadline, probes = H.now() + 8, 0
    while H.now() < deadline do
      local r = H.run(("curl -s --max-time 3 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/healthz"):format(port))
      assert.equal("200", r.stdout, ("/healthz after %d probe(s), %d message(s) handled"):format(probes,
        #H.read_lines(out)))
      probes = probes + 1
      H.sleep(0.25)
    end
    assert.is_true(#H.read_lines(out) >= 10, "handlers ran meanwhile")
    assert.equal(0, p.stop(20))
  end)
end)
