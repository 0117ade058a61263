-- The status page: GET / on `luka run --http` serves one self-contained
-- HTML page that draws /status.json (endpoints, partitions and lag, rates,
-- the last failures, publishers).  luka runs spec/fixtures/status.lua
-- against `luka broker` while orders flow in bursts, one in five failing
-- into a dead-letter topic; Debian's chromium loads the page headless, and
-- every figure on it must be the one /status.json had in the document the
-- page drew.  The run leaves a screenshot at build/status.png (the
-- README's copy is spec/screenshots/status.png).
local H = require "support.helper"

local CHROMIUM = "/usr/bin/chromium"
local SHOT = H.root .. "/build/status.png"

local broker, port, luka_proc, producer

-- GET path: status code, body, content type.
local function get(path)
  local dir = H.tmpdir()
  local r = H.run(("curl -s --max-time 3 -D %s -o %s -w '%%{http_code}' http://127.0.0.1:%d%s"):format(
    H.q(dir .. "/head"), H.q(dir .. "/body"), port, path))
  local head = H.read_file(dir .. "/head") or ""
  return tonumber(r.stdout) or 0, H.read_file(dir .. "/body") or "",
    head:lower():match("content%-type:%s*([^\r\n]+)")
end

local function status()
  local code, body = get("/status.json")
  assert(code == 200, "GET /status.json answered " .. code)
  return H.json_decode(body)
end

local function endpoint(doc, name)
  for _, ep in ipairs(doc.endpoints) do if ep.name == name then return ep end end
end

-- Runs chromium headless on the page with a profile of its own (other
-- runs may be going on); returns what it printed.
local function chromium(args)
  local r = H.run(("%s --headless=new --no-sandbox --disable-gpu --hide-scrollbars "
    .. "--user-data-dir=%s %s http://127.0.0.1:%d/"):format(CHROMIUM, H.q(H.tmpdir()), args, port),
    { timeout = 120 })
  assert(r.code == 0, "chromium failed: " .. r.stderr)
  return r.stdout
end

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', ["#39"] = "'", nbsp = "\194\160" }
local function unescape(s)
  return (s:gsub("&(#?%w+);", function(e) return ENTITIES[e] end))
end

-- Every figure of the rendered page: { [data-k] = data-v }.
local function page_figures(dom)
  local out = {}
  for k, v in dom:gmatch('data%-k="([^"]*)" data%-v="([^"]*)"') do out[unescape(k)] = unescape(v) end
  return out
end

-- The figures the page must show for doc, keyed as the page keys them.
local COUNTS = { "consumed", "handled", "failed", "dead_lettered" }
local PUB_COUNTS = { "published", "acked", "failed" }
local function expected(doc)
  local out = { seq = doc.seq, ready = doc.ready }
  local function put(v, ...) out[table.concat({ ... }, "|")] = v == nil and "" or v end
  for _, ep in ipairs(doc.endpoints) do
    for _, f in ipairs({ "name", "kind", "group", "state", "in_flight", "concurrency", "waiting_io",
                         "waiting", "assigned" }) do
      put(ep[f], "ep", ep.name, f)
    end
    for c, v in pairs(ep.totals) do put(v, "ep", ep.name, "total", c) end
    for _, c in ipairs(COUNTS) do put(ep.rates[c], "ep", ep.name, "rate", c) end
    for _, p in ipairs(ep.partitions) do
      local n = 0
      for i = 1, #doc.samples_ms do n = n + (p.history[i] ~= nil and 1 or 0) end
      put(p.lag, "part", ep.name, p.topic, p.partition, "lag")
      put(n, "part", ep.name, p.topic, p.partition, "points")
    end
  end
  for i, f in ipairs(doc.failures) do
    for _, k in ipairs({ "time_ms", "endpoint", "topic", "partition", "offset", "attempt", "error" }) do
      put(f[k], "fail", i, k)
    end
  end
  for _, p in ipairs(doc.publishers) do
    put(p.name, "pub", p.name, "name")
    put(p.topic, "pub", p.name, "topic")
    for _, c in ipairs(PUB_COUNTS) do
      put(p.totals[c], "pub", p.name, "total", c)
      put(p.rates[c], "pub", p.name, "rate", c)
    end
  end
  return out
end

-- Numbers compare as numbers (JavaScript writes 0 where JSON had 0.0).
local function same(want, got)
  if type(want) == "number" then return tonumber(got) == want end
  return tostring(want) == got
end

setup(function()
  assert(io.open(CHROMIUM), "no " .. CHROMIUM .. ": install Debian's chromium (scripts/setup test)")
  broker = H.broker_start { topics = { "status_orders:4", "status_dlt:1", "status_audit:2",
    "status_beats:1" } }
  port = H.free_port()
  luka_proc = H.spawn(("%s run spec/fixtures/status.lua --brokers %s --http 127.0.0.1:%d"):format(
    H.luka, broker.bootstrap, port))
  H.wait_until(function()
    local doc = status()
    return endpoint(doc, "orders").state == "joined" and endpoint(doc, "auditLog").state == "joined"
  end, 60, "both endpoints to join their groups")
  -- Orders in bursts of 100 every 2 s, keyed over the 4 partitions; every
  -- fifth is refused by the handler and dead-lettered.
  local dir = H.tmpdir()
  H.write_file(dir .. "/produce.sh", ([[
n=0
while :; do
  i=0
  while [ $i -lt 100 ]; do
    n=$((n + 1)); i=$((i + 1))
    if [ $((n %% 5)) = 0 ]; then echo "o$n|{\"n\":$n,\"bad\":true}"; else echo "o$n|{\"n\":$n}"; fi
  done | kcat -P -b %s -t status_orders -K '|'
  sleep 2
done
]]):format(broker.bootstrap))
  producer = H.spawn("sh " .. H.q(dir .. "/produce.sh"))
end)

teardown(function()
  if producer then producer.stop() end
  if luka_proc then luka_proc.stop() end
  broker.stop()
end)

describe("/status.json", function()
  it("has the documented fields, a history every 5 s, and the failures newest first", function()
    local doc = H.wait_until(function()
      local d = status()
      local ep = endpoint(d, "orders")
      return #d.samples_ms >= 3 and ep.totals.dead_lettered > 0 and ep.rates.consumed ~= nil and d
    end, 60, "three samples and a dead letter")
    assert.equal("string", type(doc.version))
    assert.equal("spec/fixtures/status.lua", doc.app)
    assert.equal("integer", math.type(doc.seq))
    assert.is_true(doc.ready)
    assert.is_false(doc.stopping)
    assert.equal(5000, doc.sample_interval_ms)
    assert.equal(600000, doc.history_window_ms)
    assert.equal(60000, doc.rate_window_ms)
    assert.is_true(math.abs(doc.time_ms / 1000 - os.time()) < 30)
    for i = 2, #doc.samples_ms do
      local step = doc.samples_ms[i] - doc.samples_ms[i - 1]
      assert.is_true(step > 4000 and step < 7000, "a sample every 5 s, got " .. step)
    end

    local ep = endpoint(doc, "orders")
    assert.equal("consumer", ep.kind)
    assert.equal("status_orders", ep.group)
    assert.same({ "status_orders" }, ep.topics)
    assert.equal("joined", ep.state)
    assert.equal(4, ep.concurrency)
    assert.equal(4, ep.assigned)
    assert.is_true(ep.in_flight >= 0 and ep.in_flight <= ep.concurrency)
    for _, k in ipairs({ "consumed", "handled", "failed", "retried", "dead_lettered", "deduplicated" }) do
      assert.equal("integer", math.type(ep.totals[k]), k)
    end
    assert.is_true(ep.totals.consumed >= ep.totals.handled + ep.totals.dead_lettered)
    for _, c in ipairs(COUNTS) do
      assert.equal("number", type(ep.rates[c]), c)
      assert.is_true(#ep.history[c] <= #doc.samples_ms)
    end
    local topics = {}
    for _, p in ipairs(ep.partitions) do
      topics[#topics + 1] = p.topic .. "[" .. p.partition .. "]"
      assert.is_true(#p.history <= #doc.samples_ms)
    end
    assert.same({ "status_orders[0]", "status_orders[1]", "status_orders[2]", "status_orders[3]" }, topics)

    assert.is_true(#doc.failures >= 1 and #doc.failures <= 20)
    for i, f in ipairs(doc.failures) do
      assert.equal("orders", f.endpoint)
      assert.equal("status_orders", f.topic)
      assert.matches("order %d+ refused: no such customer", f.error)
      assert.equal(1, f.attempt)
      assert.equal("integer", math.type(f.offset))
      if i > 1 then assert.is_true(f.time_ms <= doc.failures[i - 1].time_ms) end
    end

    local pubs = {}
    for _, p in ipairs(doc.publishers) do pubs[p.name] = p end
    assert.equal("status_audit", pubs.audit.topic)
    assert.is_true(pubs.audit.totals.acked > 0)
    assert.is_true(pubs.beats.totals.published > 0)
    assert.truthy(pubs["luka.internal"], "the dead letters' publisher")
    assert.equal("number", type(pubs.beats.rates.published))

    local later = H.wait_until(function()
      local d = status()
      return d.seq > doc.seq and d
    end, 5, "the next document")
    assert.is_true(later.time_ms > doc.time_ms)
  end)
end)

describe("the status page", function()
  it("is one self-contained HTML page, with no external assets", function()
    local code, body, ctype = get("/")
    assert.equal(200, code)
    assert.equal("text/html; charset=utf-8", ctype)
    assert.matches("^<!doctype html>", body)
    assert.truthy(body:find('fetch("status.json"', 1, true), "it reads status.json beside it")
    -- The SVG namespace is a name, not something fetched.
    local rest = body:gsub("http://www%.w3%.org/2000/svg", "")
    assert.is_nil(rest:find("https?://"), "the page refers to nothing outside itself")
    assert.is_nil(rest:find("url%("), "no stylesheet fetches anything")
    assert.is_nil(body:find("<link", 1, true))
    assert.is_nil(body:find("<script src", 1, true))
    local c = get("/?refresh=1")
    assert.equal(200, c, "a query string is ignored")
  end)

  it("shows in a headless browser the figures of /status.json, while messages flow", function()
    H.wait_until(function()
      local d = status()
      return #d.samples_ms >= 4 and #d.failures >= 3 and d
    end, 60, "four samples and a few failures")
    -- Every document the server hands out while chromium runs, by seq:
    -- the page's is among them.
    local dir = H.tmpdir()
    H.write_file(dir .. "/poll.sh", ([[
i=0
while :; do
  i=$((i + 1))
  curl -s --max-time 2 -o %s/$i.tmp http://127.0.0.1:%d/status.json && mv %s/$i.tmp %s/$i.json
  sleep 0.1
done
]]):format(dir, port, dir, dir))
    local poller = H.spawn("sh " .. H.q(dir .. "/poll.sh"))
    local before = status()
    local dom = chromium("--virtual-time-budget=5000 --dump-dom")
    H.sleep(0.3)
    poller.stop()
    local after = status()
    assert.is_true(after.seq > before.seq)
    assert.is_true(endpoint(after, "orders").totals.consumed > endpoint(before, "orders").totals.consumed,
      "orders were flowing while the page loaded")

    local got = page_figures(dom)
    local seq = tonumber(got.seq)
    assert.truthy(seq, "the page shows which document it drew:\n" .. dom:sub(1, 2000))
    local doc
    local files = H.run("ls " .. H.q(dir)).stdout
    for name in files:gmatch("(%d+)%.json") do
      local ok, d = pcall(H.json_decode, H.read_file(dir .. "/" .. name .. ".json"))
      if ok and d.seq == seq then doc = d end
    end
    assert.truthy(doc, "document " .. seq .. " was fetched while the page loaded")

    local want = expected(doc)
    for k, v in pairs(want) do
      assert.truthy(got[k], "the page does not show " .. k)
      assert.is_true(same(v, got[k]), ("%s: /status.json has %s, the page %s"):format(k, tostring(v), got[k]))
    end
    for k in pairs(got) do assert.truthy(want[k] ~= nil, "the page shows " .. k .. ", not in /status.json") end
    -- What it drew is a flowing app: failures, dead letters, lag per partition.
    assert.is_true(tonumber(got["ep|orders|total|dead_lettered"]) > 0)
    assert.matches("refused: no such customer", got["fail|1|error"])
    assert.truthy(got["part|orders|status_orders|3|points"])
    assert.equal("joined", got["ep|auditLog|state"])
    -- The text shown, not only the attributes.
    assert.truthy(dom:find(">status_orders<", 1, true))
    assert.truthy(dom:find("no such customer", 1, true))
  end)

  it("leaves a screenshot of itself at build/status.png", function()
    os.remove(SHOT)
    os.execute("mkdir -p " .. H.q(H.root .. "/build"))
    chromium(("--virtual-time-budget=5000 --window-size=1280,1200 --screenshot=%s"):format(H.q(SHOT)))
    local png = H.read_file(SHOT)
    assert.truthy(png, "no screenshot at " .. SHOT)
    assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    assert.is_true(#png > 20000, "the screenshot is nearly empty: " .. #png .. " bytes")
  end)

  it("goes with luka, which stops cleanly at SIGTERM", function()
    producer.stop()
    producer = nil
    assert.truthy(luka_proc.kill("TERM"))
    local code = luka_proc.wait(30)
    luka_proc = nil
    assert.equal(0, code)
  end)
end)
