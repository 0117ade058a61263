-- Operations: the HTTP endpoint (/healthz, /readyz, /metrics) of `luka run
-- --http`, structured logs without secrets, and the admin commands `luka
-- topics` and `luka lag`.  luka runs against `luka broker` in its own
-- process; HTTP is spoken by curl and by raw sockets from Python, and
-- /metrics is read with Debian's prometheus_client parser.
local H = require "support.helper"

local PY = H.PY

-- raw.py PORT send          : stdin is sent as is; prints the answer
-- raw.py PORT slow          : holds an unfinished request, probes /healthz meanwhile
-- raw.py PORT flood N       : opens N idle connections, then probes /healthz
local RAW_HTTP = [[
import json, socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]

def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=10)

def exchange(data):
    start = time.monotonic()
    s = connect()
    s.sendall(data)
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
    s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode().strip().lower()] = v.decode().strip()
    return {"status": status, "headers": headers, "body": body.decode("utf-8", "replace"),
            "seconds": time.monotonic() - start}

def closed_by_server(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True

probe = b"GET /healthz HTTP/1.1\r\nHost: luka\r\n\r\n"
if mode == "send":
    print(json.dumps(exchange(sys.stdin.buffer.read())))
elif mode == "slow":
    s = connect()
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: luka\r\n")
    start = time.monotonic()
    answer = exchange(probe)
    s.settimeout(15)
    try:
        closed = s.recv(1) == b""
    except ConnectionResetError:
        closed = True
    print(json.dumps({"probe": answer, "closed": closed, "held": time.monotonic() - start}))
elif mode == "flood":
    socks = [connect() for _ in range(int(sys.argv[3]))]
    time.sleep(0.5)
    answer = exchange(probe)
    closed = sum(1 for s in socks if closed_by_server(s))
    print(json.dumps({"probe": answer, "closed": closed}))
]]

local broker, scripts

setup(function()
  broker = H.broker_start { control = true, topics = { "ops_in:2", "ops_out:2", "ops_json:1",
    "ops_json_out:1", "ops_lag:3", "ops_grown:2", "ops_same:2" } }
  local dir = H.tmpdir()
  scripts = { raw = H.write_file(dir .. "/raw.py", RAW_HTTP) }
end)

teardown(function() broker.stop() end)

-- GET (or method) url with curl: status code and body.
local function http(port, path, method)
  local r = H.run(("curl -s --max-time 3 -X %s -w '\\n%%{http_code}' %s"):format(method or "GET",
    H.q(("http://127.0.0.1:%d%s"):format(port, path))))
  local body, code = r.stdout:match("^(.*)\n(%d+)$")
  return tonumber(code) or 0, body or ""
end

-- Waits until path answers status; returns the decoded JSON body.
local function wait_status(port, path, status, timeout, what)
  return H.wait_until(function()
    local code, body = http(port, path)
    return code == status and H.json_decode(body)
  end, timeout or 15, what or (path .. " answering " .. status))
end

local metrics = H.metrics

-- The value of the sample called name whose labels include labels.
local function sample(m, name, labels)
  for _, s in ipairs(m.samples) do
    local match = s.name == name
    for k, v in pairs(labels or {}) do match = match and s.labels[k] == v end
    if match then return s.value end
  end
end

local function raw(port, mode, arg, input)
  local r = H.run(("%s %s %d %s %s"):format(PY, H.q(scripts.raw), port, mode, arg or ""),
    { input = input, timeout = 30 })
  assert(r.code == 0, r.stderr)
  return H.json_decode(r.stdout)
end

describe("luka run --http", function()
  local port, proc
  local ep = { endpoint = "ops", group = "ops" }

  setup(function()
    port = H.free_port()
    -- The endpoint cannot join while its group has no coordinator: the
    -- first FindCoordinator requests fail, each retried after a second.
    assert.equal("ok", broker.control("fail FindCoordinator 3 COORDINATOR_NOT_AVAILABLE"))
    proc = H.spawn(("%s run spec/fixtures/ops.lua --brokers %s --http 127.0.0.1:%d"):format(H.luka,
      broker.bootstrap, port), { env = { TOPIC = "ops_in", GROUP = "ops", OUT_TOPIC = "ops_out" } })
  end)

  teardown(function() if proc then proc.stop() end end)

  it("answers /readyz 503 with the reason until the endpoint joins its group, then 200", function()
    local body = H.wait_until(function()
      local code, b = http(port, "/readyz")
      -- Before its first tick the server says "starting".
      return code == 503 and H.json_decode(b).reason ~= "starting" and H.json_decode(b)
    end, 10, "/readyz answering 503 with a reason")
    assert.same({ ready = false, reason = "endpoint ops has not joined group ops" }, body)
    assert.equal(200, (http(port, "/healthz")), "the loop runs: healthy, though not ready")
    assert.same({ ready = true }, wait_status(port, "/readyz", 200, 20))
  end)

  it("refuses to start on an address in use or a malformed one, before connecting to Kafka", function()
    local r = H.run(("%s run spec/fixtures/ops.lua --brokers %s --http 127.0.0.1:%d"):format(H.luka,
      broker.bootstrap, port))
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find(("--http 127.0.0.1:%d: cannot listen: address already in use"):format(port), 1, true), r.stderr)
    r = H.run(("LUKA_HTTP=localhost %s run spec/fixtures/ops.lua --brokers %s"):format(H.luka, broker.bootstrap))
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("--http takes HOST:PORT (such as 0.0.0.0:9090), got 'localhost'", 1, true), r.stderr)
    assert.is_nil(r.stderr:find("subscribed", 1, true), "no client was opened")
  end)

  it("counts known traffic in /metrics: 20 consumed, 5 failed and ignored, 15 handled and published", function()
    local msgs = {}
    for n = 1, 20 do
      msgs[n] = { key = "k" .. n, value = n % 4 == 0 and ('{"n":%d,"fail":true}'):format(n) or ('{"n":%d}'):format(n) }
    end
    H.kcat_produce(broker.bootstrap, "ops_in", msgs)
    local m = H.wait_until(function()
      local m = metrics(port)
      return sample(m, "luka_messages_consumed_total", ep) == 20
        and sample(m, "luka_messages_acked_total", { publisher = "ops_out" }) == 15 and m
    end, 20, "20 messages consumed and 15 acknowledged")
    assert.equal(15, sample(m, "luka_messages_handled_total", ep))
    assert.equal(5, sample(m, "luka_messages_failed_total", ep))
    assert.equal(5, sample(m, "luka_messages_ignored_total", ep))
    for _, name in ipairs({ "retried", "dead_lettered", "deduplicated", "resent", "released", "stopped" }) do
      assert.equal(0, sample(m, "luka_messages_" .. name .. "_total", ep), name)
    end
    assert.equal(15, sample(m, "luka_messages_published_total", { publisher = "ops_out" }))
    assert.equal(0, sample(m, "luka_messages_publish_failed_total", { publisher = "ops_out" }))
    assert.is_true(sample(m, "luka_rebalances_total", ep) >= 1)
    assert.equal(1, sample(m, "luka_endpoint_joined", ep))
    assert.equal(1, sample(m, "luka_ready"))
    assert.equal(0, sample(m, "luka_reloads_total"))
    assert.equal(0, sample(m, "luka_reload_failures_total"))
    assert.is_true(sample(m, "luka_process_resident_memory_bytes") > 1e6)
    -- Every message made one handler call.
    assert.equal(20, sample(m, "luka_handler_duration_seconds_count", ep))
    assert.equal(20, sample(m, "luka_handler_duration_seconds_bucket", { endpoint = "ops", le = "+Inf" }))
    assert.is_true(sample(m, "luka_handler_duration_seconds_sum", ep) > 0)
    assert.equal("histogram", m.types.luka_handler_duration_seconds)
    assert.equal("counter", m.types.luka_messages_consumed)
    assert.equal("gauge", m.types.luka_consumer_lag_messages)
    -- Lag per partition reaches 0 once the offsets are committed.
    H.wait_until(function()
      local mm = metrics(port)
      local l0 = sample(mm, "luka_consumer_lag_messages", { endpoint = "ops", topic = "ops_in", partition = "0" })
      local l1 = sample(mm, "luka_consumer_lag_messages", { endpoint = "ops", topic = "ops_in", partition = "1" })
      return l0 == 0 and l1 == 0
    end, 15, "the lag of ops_in[0] and ops_in[1] at 0")
  end)

  it("flips /readyz to 503 when the broker goes down and back to 200 when it returns", function()
    assert.equal("ok", broker.control("down all"))
    finally(function() broker.control("up all") end)
    local body = wait_status(port, "/readyz", 503, 15)
    assert.is_false(body.ready)
    assert.truthy(body.reason:find("has no connection to any broker", 1, true), body.reason)
    assert.equal("ok", broker.control("up all"))
    assert.same({ ready = true }, wait_status(port, "/readyz", 200, 30))
  end)

  it("answers /healthz 503 while a handler stalls the loop past 5 s, and 200 once it returns", function()
    H.kcat_produce(broker.bootstrap, "ops_in", { { key = "stall", value = '{"n":100,"stall":7}' } })
    local body = wait_status(port, "/healthz", 503, 12)
    assert.is_false(body.healthy)
    assert.truthy(body.reason:find("event loop has not run", 1, true), body.reason)
    local code = http(port, "/readyz")
    assert.equal(503, code, "a stalled loop is not ready either")
    assert.is_true(wait_status(port, "/healthz", 200, 10).healthy)
  end)

  it("answers 404 for unknown paths, 405 for other methods, 400 for malformed requests", function()
    assert.equal(404, (http(port, "/nope")))
    assert.equal(405, (http(port, "/metrics", "POST")))
    assert.equal(405, (http(port, "/healthz", "DELETE")))
    assert.equal(200, (http(port, "/metrics?name[]=luka")), "a query string is ignored")
    local bad = {
      "GARBAGE\r\n\r\n",
      "GET /healthz HTTP/1.1\r\n\r\n", -- HTTP/1.1 without Host
      "GET healthz HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
      "GET /hea\0lthz HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for _, req in ipairs(bad) do
      local a = raw(port, "send", nil, req)
      assert.equal(400, a.status, ("%q"):format(req))
      assert.equal("close", a.headers.connection)
    end
    local missing = raw(port, "send", nil, "HEAD /nope HTTP/1.0\r\n\r\n")
    assert.equal(404, missing.status)
    assert.equal("", missing.body, "HEAD answers carry no body")
    local head = raw(port, "send", nil, "HEAD /metrics HTTP/1.0\r\n\r\n")
    assert.equal(200, head.status)
    assert.equal("", head.body)
    assert.is_true(tonumber(head.headers["content-length"]) > 1000)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", head.headers["content-type"])
  end)

  it("answers 431 to a request head over 8 KiB and keeps serving", function()
    local a = raw(port, "send", nil, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(16384) .. "\r\n\r\n")
    assert.equal(431, a.status)
    assert.equal(200, (http(port, "/healthz")))
  end)

  it("serves others while a slow client holds a connection, and closes that one after 5 s", function()
    local r = raw(port, "slow")
    assert.equal(200, r.probe.status)
    assert.is_true(r.probe.seconds < 1, "the probe waited " .. r.probe.seconds .. " s")
    assert.is_true(r.closed, "the slow connection was closed")
    assert.is_true(r.held > 4 and r.held < 8, "closed after " .. r.held .. " s")
  end)

  it("keeps answering with 300 idle connections open, closing the oldest beyond 256", function()
    local r = raw(port, "flood", 300)
    assert.equal(200, r.probe.status)
    assert.is_true(r.closed >= 300 - 256, r.closed .. " idle connections closed")
    assert.equal(200, (http(port, "/healthz")))
  end)

  it("stops serving when luka stops, and exits 0", function()
    assert.equal(0, proc.stop(15))
    assert.equal(0, (http(port, "/healthz")), "nothing listens any more")
    proc = nil
  end)
end)

describe("luka logs", function()
  local secrets = { KEY_PASSWORD = "key-pw-Zq81", APP_PASSWORD = "app-pw-Xk27",
                    LUKA_KAFKA_SASL_PASSWORD = "env-pw-Vb53" }

  it("writes one JSON object per line, with the message's context, and never a secret", function()
    H.kcat_produce(broker.bootstrap, "ops_json", { { key = 'q"uo\\te\tand\xff\xfebytes', value = '{"n":1}' } })
    local env = { TOPIC = "ops_json", GROUP = "ops_json", OUT_TOPIC = "ops_json_out",
                  LUKA_KAFKA_DEBUG = "all", LUKA_LOG_FORMAT = "json" }
    for k, v in pairs(secrets) do env[k] = v end
    local p = H.spawn(("%s run spec/fixtures/ops_secrets.lua --brokers %s --log-level debug"):format(
      H.luka, broker.bootstrap), { env = env })
    p.wait_output('"component":"policy"[^\n]*handler failed', 20, "the handler's failure in the log")
    assert.equal(0, p.stop())
    local out = p.output()
    for name, secret in pairs(secrets) do
      assert.is_nil(out:find(secret, 1, true), name .. " appears in the log")
    end
    assert.truthy(out:find("sasl.password = [redacted]", 1, true), "librdkafka's config dump ran")
    local n, failure = 0, nil
    for line in out:gmatch("[^\n]+") do
      local ok, j = pcall(H.json_decode, line)
      assert.is_true(ok, "not JSON: " .. line)
      assert.is_string(j.time)
      assert.truthy(j.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), j.time)
      assert.truthy(({ error = 1, warn = 1, info = 1, debug = 1 })[j.level], line)
      assert.is_string(j.component)
      assert.is_string(j.message)
      if j.component == "policy" and j.message:find("handler failed", 1, true) then failure = j end
      n = n + 1
    end
    assert.is_true(n > 100, "debug=all logs plenty: " .. n)
    assert.equal("secrets", failure.endpoint)
    assert.equal("ops_json", failure.topic)
    assert.equal(0, failure.partition)
    assert.equal(0, failure.offset)
    -- The key's quote, backslash and tab survive; its invalid bytes become U+FFFD.
    assert.truthy(failure.message:find('q"uo\\te\tand\u{fffd}\u{fffd}bytes', 1, true), failure.message)
  end)

  it("blanks secrets in a KEY=VALUE pair whatever wrote it", function()
    local dir = H.tmpdir()
    local app = H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.consumer "kv" {
  topics = { "ops_json" },
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 },
  final_failure = "ignore",
  handle = function() error("connecting with sasl.password=hunter2, user=bob") end,
}
]])
    local p = H.spawn(("%s run %s --brokers %s"):format(H.luka, app, broker.bootstrap))
    p.wait_output("user=bob", 15)
    p.stop()
    assert.is_nil(p.output():find("hunter2", 1, true), p.output())
    assert.truthy(p.output():find("sasl.password=********, user=bob", 1, true), p.output())
  end)

  it("keeps secrets out of luka check", function()
    local env = {}
    for k, v in pairs(secrets) do env[#env + 1] = k .. "=" .. H.q(v) end
    local r = H.run(table.concat(env, " ") .. " " .. H.luka .. " check spec/fixtures/ops_secrets.lua")
    assert.equal(0, r.code, r.stderr)
    for name, secret in pairs(secrets) do
      assert.is_nil((r.stdout .. r.stderr):find(secret, 1, true), name .. " appears in luka check")
    end
    assert.truthy(r.stdout:find("sasl.password = ********", 1, true), r.stdout)
  end)

  it("rejects an unknown log format", function()
    local r = H.run(H.luka .. " check spec/fixtures/ops.lua --log-format xml")
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("--log-format must be text or json, got 'xml'", 1, true), r.stderr)
  end)
end)

describe("luka topics", function()
  local env = "GROWN=ops_grown MISSING=ops_missing SAME=ops_same "

  it("shows the declared topics against the cluster, with what differs", function()
    local r = H.run(env .. H.luka .. " topics spec/fixtures/ops_topics.lua --timeout 2000 --brokers " ..
      H.q(broker.bootstrap))
    assert.equal(0, r.code, r.stderr)
    local rows = {}
    for line in r.stdout:gmatch("[^\n]+") do
      local cols = {}
      for c in line:gmatch("%S+") do cols[#cols + 1] = c end
      rows[cols[1]] = cols
    end
    assert.same({ "TOPIC", "EXISTS", "PARTITIONS", "DECLARED", "REPLICATION", "DECLARED" }, rows.TOPIC)
    assert.same({ "ops_grown", "yes", "2", "4", "1", "1" }, rows.ops_grown)
    assert.same({ "ops_missing", "no", "-", "3", "-", "default" }, rows.ops_missing)
    assert.same({ "ops_same", "yes", "2", "2", "1", "default" }, rows.ops_same)
    assert.truthy(r.stdout:find("ops_grown: 2 partition(s), 4 declared: luka topics --apply adds 2", 1, true), r.stdout)
    assert.truthy(r.stdout:find("ops_missing: missing: luka topics --apply creates it", 1, true), r.stdout)
    assert.is_nil(r.stdout:find("ops_same:", 1, true), "nothing differs for ops_same")
  end)

  it("reports each topic --apply could not create or grow, with the broker's error, and exits 1", function()
    -- The embedded broker has no CreateTopics or CreatePartitions.
    local r = H.run(env .. H.luka .. " topics spec/fixtures/ops_topics.lua --apply --timeout 1000 --brokers " ..
      H.q(broker.bootstrap))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("ops_missing: cannot create: [^\n]*Timed out"), r.stdout)
    assert.truthy(r.stdout:find("ops_grown: cannot add partitions: [^\n]*Timed out"), r.stdout)
    assert.truthy(r.stderr:find("2 change(s) failed on " .. broker.bootstrap, 1, true), r.stderr)
    assert.equal(2, H.partition_count(broker.bootstrap, "ops_grown"), "nothing was changed")
  end)

  it("names the brokers it cannot reach and exits 1", function()
    local r = H.run(env .. H.luka .. " topics spec/fixtures/ops_topics.lua --timeout 1000 --brokers 127.0.0.1:1")
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("cannot read the cluster's metadata from 127.0.0.1:1", 1, true), r.stderr)
  end)
end)

describe("luka lag", function()
  it("agrees with the offsets luka committed and the log end offsets", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local msgs = {}
    for n = 1, 30 do msgs[n] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
    H.kcat_produce(broker.bootstrap, "ops_lag", msgs)
    local env = { OUT = out, TOPIC = "ops_lag", GROUP = "ops_lag" }
    local p = H.spawn(("%s run spec/fixtures/record.lua --brokers %s"):format(H.luka, broker.bootstrap),
      { env = env })
    H.wait_until(function() return #H.read_lines(out) >= 30 end, 20, "30 records")
    assert.equal(0, p.stop())
    -- What luka handled, per partition: the offsets it must have committed.
    local handled = {}
    for _, line in ipairs(H.read_lines(out)) do
      local part = H.json_decode(line).meta.partition
      handled[part] = (handled[part] or 0) + 1
    end
    -- Then 6 more that nobody consumes: they are the lag.
    local more = {}
    for n = 31, 36 do more[#more + 1] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
    H.kcat_produce(broker.bootstrap, "ops_lag", more)
    local ends = {}
    for _, rec in ipairs(H.kcat_consume(broker.bootstrap, "ops_lag", nil)) do
      ends[rec.partition] = math.max(ends[rec.partition] or 0, rec.offset + 1)
    end

    local r = H.run(("OUT=/dev/null TOPIC=ops_lag GROUP=ops_lag %s lag spec/fixtures/record.lua --brokers %s"):format(
      H.luka, H.q(broker.bootstrap)))
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.truthy(lines[1]:match("^GROUP%s+TOPIC%s+PARTITION%s+CURRENT%-OFFSET%s+LOG%-END%-OFFSET%s+LAG%s+"
      .. "CONSUMER%-ID%s+HOST%s+CLIENT%-ID%s+ENDPOINT$"), lines[1])
    assert.equal(4, #lines, r.stdout)
    local total = 0
    for i = 2, 4 do
      -- No member: luka stopped (and the embedded broker cannot say anyway).
      local group, topic, part, current, log_end, lag, endpoint =
        lines[i]:match("^(%S+)%s+(%S+)%s+(%d+)%s+(%S+)%s+(%d+)%s+(%S+)%s+%-%s+%-%s+%-%s+(%S+)$")
      assert.truthy(group, lines[i])
      -- A partition that got no message has no committed offset: "-".
      if current == "-" then current, lag = "0", log_end end
      part, current, log_end, lag = tonumber(part), tonumber(current), tonumber(log_end), tonumber(lag)
      assert.equal("ops_lag", group)
      assert.equal("ops_lag", topic)
      assert.equal("record", endpoint)
      assert.equal(handled[part] or 0, current, "committed offset of partition " .. part)
      assert.equal(ends[part] or 0, log_end, "log end offset of partition " .. part)
      assert.equal(log_end - current, lag)
      total = total + lag
    end
    assert.equal(6, total)
  end)
end)
