-- luka.redis: handlers call Redis and wait for the reply without holding up
-- the loop; replies map to Lua values, failures to nil, err, and a server
-- that goes away or a handler out of time leaves luka running.
local H = require "support.helper"

local broker

-- Writes an app into a fresh directory and returns its path and its
-- record file.  The app gets `record(...)`, which appends its arguments as
-- a JSON line to $OUT, nil written as "<nil>" so that positions hold.
local function app(body)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(...)
  local t = table.pack(...)
  for i = 1, t.n do if t[i] == nil then t[i] = "<nil>" end end
  t.n = nil
  out:write(luka.json.encode(luka.json.array(t)), "\n")
end
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
]] .. body)
  return dir .. "/app.lua", dir .. "/out.jsonl"
end

local function run(path, out)
  return H.spawn(("%s run %s --brokers %s"):format(H.luka, path, broker.bootstrap), { env = { OUT = out } })
end

local function produce(topic, values)
  local msgs = {}
  for i, v in ipairs(values) do msgs[i] = { key = "k" .. i, value = v } end
  H.kcat_produce(broker.bootstrap, topic, msgs)
end


setup(function()
  broker = H.broker_start { topics = { "basic:1", "auth:1", "down:1", "restart:1", "limit:1",
    "own_timeout:1", "conc:1", "reload:1" } }
end)
teardown(function() broker.stop() end)

describe("luka.redis", function()
  it("round-trips SET and GET and maps integer, array, nil and error replies", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s")
record("load", r:call("PING"))
luka.consumer "c" { topics = { "basic" }, config = config, handle = function(msg)
  record("set", r:call("SET", "k", msg.v))
  record("get", r:call("GET", "k"))
  record("incrby", r:call("INCRBY", "n", 5))
  record("float", r:call("INCRBYFLOAT", "f", 1.5))
  r:call("DEL", "l")
  record("rpush", r:call("RPUSH", "l", "a", "b", 3))
  record("lrange", r:call("LRANGE", "l", 0, -1))
  record("empty", #r:call("LRANGE", "nothing", 0, -1))
  record("missing", r:call("GET", "nothing"))
  local mget = r:call("MGET", "k", "nothing")
  record("mget", mget[1], mget[2] == luka.null)
  record("unknown", r:call("NOSUCHCOMMAND", "x"))
  record("wrongtype", r:call("LPUSH", "k", "x"))
  record("pcall", pcall(r.call, r, "GET", "k"))
  local ok, err = pcall(function() return r:call("SET", "k", {}) end)
  record("badarg", ok, err)
  ok, err = pcall(function() return r:call("SUBSCRIBE", "news") end)
  record("subscribe", ok, err)
  local other = luka.redis("%s")
  other:close()
  record("closed", other:call("PING"))
end }
]]):format(redis.url, redis.url))
    produce("basic", { '{"v":"hello"}' })
    local p = run(path, out)
    H.wait_named(out, "closed")
    assert.equal(0, p.stop())
    local got = {}
    for _, r in ipairs(H.jsonl(out)) do got[r[1]] = r end
    assert.equal("<nil>", got.load[2])
    assert.matches("^redis 127.0.0.1:%d+: PING: it can only wait inside a handler", got.load[3])
    assert.same({ "set", "OK" }, got.set)
    assert.same({ "get", "hello" }, got.get)
    assert.same({ "incrby", 5 }, got.incrby)
    assert.same({ "float", "1.5" }, got.float)
    assert.same({ "rpush", 3 }, got.rpush)
    assert.same({ "lrange", { "a", "b", "3" } }, got.lrange)
    assert.same({ "empty", 0 }, got.empty)
    assert.same({ "missing", "<nil>" }, got.missing)
    assert.same({ "mget", "hello", true }, got.mget)
    assert.equal("<nil>", got.unknown[2])
    assert.matches("^ERR unknown command", got.unknown[3])
    assert.matches("^WRONGTYPE", got.wrongtype[3])
    assert.same({ "pcall", true, "hello" }, got.pcall)
    assert.is_false(got.badarg[2])
    assert.matches("bad argument #3 to 'call' %(string or number expected, got table%)", got.badarg[3])
    assert.matches("SUBSCRIBE is not supported", got.subscribe[3])
    assert.matches("the client is closed", got.closed[3])
    assert.equal("hello", redis.cli("GET", "k"))
  end)

  it("sends AUTH and SELECT from the URL before the first command, and a refused AUTH names no password", function()
    local redis = H.redis_start { password = "s3cret-pw" }
    local path, out = app(([[
local plain = luka.redis("redis://:s3cret-pw@127.0.0.1:%d/3")
local acl = luka.redis("redis://default:s3cret-pw@127.0.0.1:%d/4")
local wrong = luka.redis("redis://:not-the-pw@127.0.0.1:%d/3")
local none = luka.redis("redis://127.0.0.1:%d")
luka.consumer "c" { topics = { "auth" }, config = config, handle = function()
  record("plain", plain:call("SET", "k", "in-3"))
  record("acl", acl:call("SET", "k", "in-4"))
  record("wrong", wrong:call("SET", "k", "x"))
  record("none", none:call("SET", "k", "x"))
end }
]]):format(redis.port, redis.port, redis.port, redis.port))
    produce("auth", { "{}" })
    local p = run(path, out)
    H.wait_named(out, "none")
    assert.equal(0, p.stop())
    local got = {}
    for _, r in ipairs(H.jsonl(out)) do got[r[1]] = r end
    assert.same({ "plain", "OK" }, got.plain)
    assert.same({ "acl", "OK" }, got.acl)
    assert.equal("in-3", redis.cli("GET", "k", { db = 3 }))
    assert.equal("in-4", redis.cli("GET", "k", { db = 4 }))
    assert.equal("", redis.cli("GET", "k"))
    assert.equal("<nil>", got.wrong[2])
    assert.matches("127.0.0.1:" .. redis.port .. ": AUTH refused: WRONGPASS", got.wrong[3])
    assert.is_nil(got.wrong[3]:find("not-the-pw", 1, true))
    assert.matches("NOAUTH", got.none[3])
  end)

  it("fails calls to a server that is down with nil, err, and connects once it is up", function()
    local port = H.free_port()
    local path, out = app(([[
local r = luka.redis("redis://127.0.0.1:%d")
luka.consumer "c" { topics = { "down" }, config = config, handle = function(msg)
  record("call", msg.n, r:call("INCR", "n"))
end }
]]):format(port))
    produce("down", { '{"n":1}' })
    local p = run(path, out)
    local first = H.wait_named(out, "call")[1]
    assert.equal("<nil>", first[3])
    assert.matches("redis 127.0.0.1:" .. port .. ": INCR: Connection refused; check that Redis runs there", first[4])
    local redis = H.redis_start { port = port }
    produce("down", { '{"n":2}' })
    local second = H.wait_named(out, "call", 2)[2]
    assert.equal(0, p.stop())
    assert.same({ "call", 2, 1 }, second)
    assert.equal("1", redis.cli("GET", "n"))
  end)

  it("fails a call whose server goes away while it waits, and the next call reconnects", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s", { timeout = "30s" })
luka.consumer "c" { topics = { "restart" }, config = config, handle = function(msg)
  record("start", msg.n)
  if msg.n == 1 then
    record("blpop", r:call("BLPOP", "never", 20))
  else
    record("incr", r:call("INCR", "n"))
  end
end }
]]):format(redis.url))
    produce("restart", { '{"n":1}' })
    local p = run(path, out)
    H.wait_named(out, "start")
    H.wait_until(function() return redis.cli("CLIENT", "LIST"):find("cmd=blpop", 1, true) end, 10,
      "the BLPOP to reach the server")
    redis.stop()
    local blpop = H.wait_named(out, "blpop")[1]
    assert.equal("<nil>", blpop[2])
    assert.matches("redis 127.0.0.1:" .. redis.port .. ": BLPOP: .*the next call connects again", blpop[3])
    redis = H.redis_start { port = redis.port }
    produce("restart", { '{"n":2}' })
    local incr = H.wait_named(out, "incr")[1]
    assert.truthy(p.alive())
    assert.equal(0, p.stop())
    assert.same({ "incr", 1 }, incr)
  end)

  it("fails a handler that runs out of time waiting as timed out, and drops the call's connection", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s")
luka.consumer "c" { topics = { "limit" }, config = config, timeout = "1s",
  error_channel = function(msg, meta, err) record("failed", msg.n, err.message) end,
  handle = function(msg)
    if msg.n == 1 then r:call("BLPOP", "never", 30) end
    record("get", msg.n, r:call("GET", "k"))
  end }
]]):format(redis.url))
    redis.cli("SET", "k", "v")
    produce("limit", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    local failed = H.wait_named(out, "failed")[1]
    local get = H.wait_named(out, "get")[1]
    assert.truthy(p.alive())
    assert.equal(1, failed[2])
    assert.matches("timed out after 1000 ms waiting for redis BLPOP at 127.0.0.1:" .. redis.port, failed[3])
    assert.same({ "get", 2, "v" }, get)
    -- The BLPOP's connection went with its call: nothing is blocked.
    H.wait_until(function() return not redis.cli("CLIENT", "LIST"):find("cmd=blpop", 1, true) end, 10,
      "the BLPOP's connection to close")
    assert.equal(0, p.stop())
  end)

  it("returns nil, err for a call past the client's own timeout, and the client goes on", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s", { timeout = "300ms" })
luka.consumer "c" { topics = { "own_timeout" }, config = config, handle = function()
  local t0 = luka.now()
  local v, err = r:call("BLPOP", "never", 5)
  record("blpop", v, err, luka.now() - t0)
  record("ping", r:call("PING"))
end }
]]):format(redis.url))
    produce("own_timeout", { "{}" })
    local p = run(path, out)
    local ping = H.wait_named(out, "ping")[1]
    assert.equal(0, p.stop())
    local blpop = H.named(out, "blpop")[1]
    assert.equal("<nil>", blpop[2])
    assert.matches("redis 127.0.0.1:" .. redis.port .. ": BLPOP timed out after 300 ms", blpop[3])
    assert.is_true(blpop[4] >= 0.25 and blpop[4] < 3, tostring(blpop[4]))
    assert.same({ "ping", "PONG" }, ping)
  end)

  it("lets several handlers wait on BLPOP at once without holding each other or a GET up", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s")
luka.consumer "c" { topics = { "conc" }, config = config, concurrency = 4, handle = function(msg)
  if msg.n == 4 then
    record("get", msg.n, r:call("GET", "k"))
  else
    record("popped", msg.n, r:call("BLPOP", "q" .. msg.n, 20))
  end
end }
]]):format(redis.url))
    redis.cli("SET", "k", "v")
    produce("conc", { '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}' })
    local p = run(path, out)
    assert.same({ "get", 4, "v" }, H.wait_named(out, "get")[1])
    H.wait_until(function()
      return select(2, redis.cli("CLIENT", "LIST"):gsub("cmd=blpop", "")) == 3
    end, 10, "three BLPOPs waiting at once")
    for n = 3, 1, -1 do
      redis.cli("RPUSH", "q" .. n, "v" .. n)
      H.sleep(0.2)
    end
    local popped = H.wait_named(out, "popped", 3, 10)
    assert.equal(0, p.stop())
    assert.same({ { "popped", 3, { "q3", "v3" } }, { "popped", 2, { "q2", "v2" } },
                  { "popped", 1, { "q1", "v1" } } }, popped)
  end)

  it("keeps a call of the old app answered across a reload, and closes the old app's connections", function()
    local redis = H.redis_start()
    local path, out = app(([[
local r = luka.redis("%s")
luka.consumer "c" { topics = { "reload" }, config = config, concurrency = 2, handle = function(msg)
  if msg.n == 1 then
    record("popped", r:call("BLPOP", "q", 20))
  else
    record("get", msg.n, r:call("GET", "k"))
  end
end }
]]):format(redis.url))
    local function clients()
      return select(2, redis.cli("CLIENT", "LIST"):gsub("\n", "")) + 1
    end
    redis.cli("SET", "k", "v")
    produce("reload", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    H.wait_named(out, "get")
    H.wait_until(function() return redis.cli("CLIENT", "LIST"):find("cmd=blpop", 1, true) end, 10,
      "the BLPOP to reach the server")
    -- Two connections of the app (the BLPOP's and an idle one), and the cli's.
    assert.equal(3, clients())
    p.kill("HUP")
    p.wait_output("reloaded", 10)
    redis.cli("RPUSH", "q", "x")
    assert.same({ "popped", { "q", "x" } }, H.wait_named(out, "popped")[1])
    produce("reload", { '{"n":3}' })
    assert.same({ "get", 3, "v" }, H.wait_named(out, "get", 2)[2])
    -- The old app closed with its last call: its connections went with it.
    H.wait_until(function() return clients() == 2 end, 10, "the old app's connections to close")
    assert.equal(0, p.stop())
  end)

  it("works in handlers under luka test, whose harness closes the client with the app", function()
    local redis = H.redis_start()
    redis.cli("SET", "greeting", "hi")
    local r = H.luka_test(([[
local luka = require "luka"
local r = luka.redis("%s")
luka.consumer "c" { topics = { "t" }, handle = function(msg)
  local v, err = r:call("GET", msg.key)
  if not v then error(err or "no value") end
  luka.publish("out", { value = v })
end }
luka.publisher "out" {}
]]):format(redis.url), [[
local test = require "luka.test"
describe("the app", function()
  it("reads Redis", function()
    local app = test.load("app.lua")
    local r = app:deliver("c", { key = "greeting" })
    assert.equal("handled", r.outcome)
    assert.equal("hi", r.published[1].payload.value)
    r = app:deliver("c", { key = "nothing" })
    assert.matches("no value", tostring(r.error))
    app:close()
  end)
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)
end)
