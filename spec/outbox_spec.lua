-- The transactional outbox's relay (luka.outbox), against a real PostgreSQL
-- (spec/support/pg.lua) and `luka broker`: `luka outbox --create` makes the
-- table, the relay publishes rows in id order with their id as the `id`
-- header and their key, marks only acknowledged rows sent (a row behind a
-- failed one of its key waits for it), two relays on one table do not
-- publish a row twice, /metrics shows each outbox, and rows written before
-- luka is killed with SIGKILL again and again are all published: an
-- independent client (kcat) finds every row id, each exactly once when
-- counted by distinct id header.
local H = require "support.helper"
local PG = require "support.pg"

local broker, pg

setup(function()
  broker = H.broker_start { control = true,
    topics = { "ob_basic:4", "ob_down:2", "ob_two:4", "ob_kill:4", "ob_metrics:1", "ob_other:1", "ob_bytes:1" } }
  pg = PG.start()
end)

teardown(function()
  pg.destroy()
  broker.stop()
end)

-- An app with one outbox on table tbl publishing to topic; extra: more
-- Lua for the script.  Returns the script's path.
local function app(tbl, topic, extra)
  local dir = H.tmpdir()
  return H.write_file(dir .. "/app.lua", ([[
local luka = require "luka"
luka.publisher "events" { topic = %q, config = { ["message.timeout.ms"] = 2000 } }
luka.outbox "events" { db = os.getenv("OUTBOX_DB"), table = %q, publisher = "events",
  batch = tonumber(os.getenv("BATCH") or "500"), poll = "50ms" }
%s
]]):format(topic, tbl, extra or ""))
end

local function luka(args, env)
  local e = ""
  for k, v in pairs(env or {}) do e = e .. ("%s=%s "):format(k, H.q(v)) end
  return H.run(e .. H.luka .. " " .. args, { timeout = 60 })
end

local function create(path)
  local r = luka(("outbox %s --create"):format(H.q(path)), { OUTBOX_DB = pg.url })
  assert(r.code == 0, r.stdout .. r.stderr)
  return r
end

-- Inserts n rows: key k<i % keys>, payload {"n":i}, a header h=i.
local function insert(tbl, n, keys, topic)
  pg.sql(([[
INSERT INTO %s (topic, key, payload, headers)
SELECT %s, 'k' || (i %% %d), '{"n":' || i || '}', jsonb_build_object('h', i::text)
FROM generate_series(1, %d) AS i]]):format(tbl, topic and ("'" .. topic .. "'") or "NULL", keys, n))
end

local function pending(tbl)
  return tonumber(pg.sql(("SELECT count(*) FROM %s WHERE sent_at IS NULL"):format(tbl)))
end

-- The value of sample name{outbox="events"} in /metrics on port, or nil.
local function sample(port, name)
  for _, smp in ipairs(H.metrics(port).samples) do
    if smp.name == name and smp.labels.outbox == "events" then return smp.value end
  end
end

local function run(path, env, args)
  env = env or {}
  env.OUTBOX_DB = pg.url
  return H.spawn(("%s run %s --brokers %s %s"):format(H.luka, H.q(path), broker.bootstrap, args or ""),
    { env = env })
end

local function wait_sent(tbl, timeout)
  H.wait_until(function() return pending(tbl) == 0 end, timeout or 30, "every row of " .. tbl .. " sent")
end

describe("luka.outbox", function()
  -- luka check on a script with one outbox declared as decl.
  local function check(decl)
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", 'local luka = require "luka"\nluka.publisher "orders" {}\n' .. decl)
    return luka("check " .. H.q(dir .. "/app.lua"))
  end

  it("is listed by luka check with its table, masked database, publisher and relay", function()
    local r = check('luka.outbox "o" { db = "postgres://u:hunter22@db:5432/shop", publisher = "orders", table = "app.Events", batch = 50, poll = "1s" }')
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("  outbox o: table app.events in postgres://u:********@db:5432/shop -> publisher orders (topic orders, or the row's)", 1, true), r.stdout)
    assert.truthy(r.stdout:find("      relay: 50 row(s) per round, polls every 1s", 1, true), r.stdout)
    assert.falsy(r.stdout:find("hunter22", 1, true))
  end)

  for _, case in ipairs({
    { 'publisher = "order", db = "postgres://h/d"', "app.lua:3: outbox 'o': unknown publisher 'order' (did you mean 'orders'?); declared: orders" },
    { 'publisher = "orders"', [[outbox 'o': missing db: add db = "postgres://USER:PASSWORD@HOST:PORT/DB"]] },
    { 'db = "postgres://h/d"', [[outbox 'o': missing publisher: add publisher = "name" (a luka.publisher or luka.channel)]] },
    { 'publisher = "orders", db = "mysql://u:pw@h/d"', [[outbox 'o': option 'db' must be a URL "postgres://USER:PASSWORD@HOST:PORT/DB", got 'mysql://u:********@h/d']] },
    { 'publisher = "orders", db = "postgres://h/d", table = "drop table"', "option 'table' must be a table name, name or schema.name (letters, digits, _), got 'drop table'" },
    { 'publisher = "orders", db = "postgres://h/d", batch = 0', "option 'batch' must be an integer >= 1, got number" },
    { 'publisher = "orders", db = "postgres://h/d", poll = "0ms"', "option 'poll' must be more than 0" },
    { 'publisher = "orders", db = "postgres://h/d", tabel = "x"', "unknown option 'tabel' (did you mean 'table'?)" },
  }) do
    it("refuses " .. case[1], function()
      local r = check('luka.outbox "o" { ' .. case[1] .. ' }')
      assert.equal(1, r.code)
      assert.truthy(r.stderr:find(case[2], 1, true), r.stderr)
    end)
  end
end)

describe("luka outbox APP", function()
  it("--create makes the table and its index of unsent rows, and says so; again is harmless", function()
    local path = app("ob_created", "ob_other")
    local r = create(path)
    assert.truthy(r.stdout:find("outbox events: table ob_created ready in postgres://luka:********@", 1, true),
      r.stdout)
    assert.falsy(r.stdout:find(pg.password, 1, true))
    create(path)
    assert.equal("id|bigint\ntopic|text\nkey|text\npayload|text\nheaders|jsonb\n"
      .. "created_at|timestamp with time zone\nsent_at|timestamp with time zone",
      pg.sql("SELECT column_name, data_type FROM information_schema.columns "
        .. "WHERE table_name = 'ob_created' ORDER BY ordinal_position"))
    assert.equal("CREATE INDEX ob_created_unsent ON public.ob_created USING btree (id) WHERE (sent_at IS NULL)",
      pg.sql("SELECT indexdef FROM pg_indexes WHERE tablename = 'ob_created' AND indexname LIKE '%unsent'"))
  end)

  it("prints each outbox's pending rows and oldest age", function()
    local path = app("ob_listed", "ob_other")
    create(path)
    insert("ob_listed", 3, 1)
    local r = luka(("outbox %s"):format(H.q(path)), { OUTBOX_DB = pg.url })
    assert.equal(0, r.code, r.stderr)
    assert.matches("^outbox events: table ob_listed, 3 row%(s%) pending, oldest %d+%.%ds, publisher events", r.stdout)
  end)

  it("names the outbox and the masked URL when the database cannot be reached", function()
    local path = app("ob_listed", "ob_other")
    local url = ("postgres://luka:hunter22@127.0.0.1:%d/luka"):format(H.free_port())
    local r = luka(("outbox %s"):format(H.q(path)), { OUTBOX_DB = url })
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("outbox 'events': cannot connect to postgres://luka:********@127.0.0.1", 1, true),
      r.stderr)
    assert.falsy(r.stderr:find("hunter22", 1, true))
  end)
end)

describe("the outbox relay", function()
  it("publishes rows in id order with the id header, key, headers and payload, and marks them sent", function()
    local path = app("ob_basic", "ob_basic")
    create(path)
    insert("ob_basic", 60, 5)
    local p = run(path)
    wait_sent("ob_basic")
    local got = H.kcat_consume(broker.bootstrap, "ob_basic", 60)
    assert.equal(0, p.stop())
    assert.equal(60, #got)
    local last = {}
    for _, m in ipairs(got) do
      local id = tonumber(m.headers.id)
      local n = H.json_decode(m.value).n
      assert.equal(id, n) -- ids follow the insert order
      assert.equal("k" .. (n % 5), m.key)
      assert.equal(tostring(n), m.headers.h)
      -- Per key, in id order (a key stays in its partition).
      assert.is_true((last[m.key] or 0) < id, "key " .. m.key .. " out of order")
      last[m.key] = id
    end
    assert.equal(0, tonumber(pg.sql("SELECT count(*) FROM ob_basic WHERE sent_at < created_at")))
  end)

  it("sends a row with a topic there, and a row without one to the publisher's topic", function()
    local path = app("ob_topics", "ob_other")
    create(path)
    pg.sql([[INSERT INTO ob_topics (topic, key, payload) VALUES ('ob_metrics', 'a', 'to metrics'),
      (NULL, 'b', 'to other')]])
    local p = run(path)
    wait_sent("ob_topics")
    assert.equal(0, p.stop())
    local other = H.kcat_consume(broker.bootstrap, "ob_other", 1)
    assert.equal("to other", other[#other].value)
    local m = H.kcat_consume(broker.bootstrap, "ob_metrics", 1)
    assert.equal("to metrics", m[1].value)
  end)

  it("sends a bytea payload's bytes as they are", function()
    local path = app("ob_bytes", "ob_bytes")
    pg.sql([[CREATE TABLE ob_bytes (id bigserial PRIMARY KEY, topic text, key text, payload bytea,
      headers jsonb, created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);
      INSERT INTO ob_bytes (key, payload) VALUES ('bin', decode('680069', 'hex'))]])
    local p = run(path)
    wait_sent("ob_bytes")
    assert.equal(0, p.stop())
    local got = H.kcat_consume(broker.bootstrap, "ob_bytes", nil)
    local found
    for _, m in ipairs(got) do
      if m.key == "bin" then found = m end
    end
    assert.equal("h\0i", found.value)
  end)

  it("leaves rows unsent while the broker does not acknowledge them, then sends them", function()
    local path = app("ob_down", "ob_down", 'luka.runtime { timeout = "10s" }')
    create(path)
    assert.equal("ok", broker.control("down all"))
    insert("ob_down", 20, 3)
    local p = run(path)
    local ok, err = pcall(function()
      p.wait_output("outbox 'events' %(postgres://luka:%*%*%*%*%*%*%*%*@[^)]*%): 20 of 20 row%(s%) not acknowledged",
        20, "the relay's failed round")
      assert.equal(20, pending("ob_down"))
    end)
    assert.equal("ok", broker.control("up all"))
    assert(ok, err)
    wait_sent("ob_down", 40)
    p.wait_output("outbox 'events' %(.-%) works again", 10)
    assert.equal(0, p.stop())
    local got = H.kcat_consume(broker.bootstrap, "ob_down", nil)
    local ids = {}
    for _, m in ipairs(got) do ids[tonumber(m.headers.id)] = true end
    for id = 1, 20 do assert.is_true(ids[id], "row " .. id) end
  end)

  it("logs a database it cannot reach with the outbox and the masked URL, and goes on", function()
    local path = app("ob_basic", "ob_other")
    local url = ("postgres://luka:hunter22@127.0.0.1:%d/luka"):format(H.free_port())
    local p = H.spawn(("%s run %s --brokers %s"):format(H.luka, H.q(path), broker.bootstrap),
      { env = { OUTBOX_DB = url } })
    p.wait_output("outbox 'events' %(postgres://luka:%*%*%*%*%*%*%*%*@127%.0%.0%.1:%d+/luka%): database:", 15)
    H.sleep(0.5)
    assert.is_true(p.alive())
    assert.equal(0, p.stop())
    assert.falsy(p.output():find("hunter22", 1, true))
    -- Logged once, not at every poll.
    local _, n = p.output():gsub("database:", "")
    assert.equal(1, n)
  end)

  it("run by two luka processes on one table publishes each row once", function()
    local path = app("ob_two", "ob_two")
    create(path)
    insert("ob_two", 1000, 20)
    local a = run(path, { BATCH = "50" })
    local b = run(path, { BATCH = "50" })
    wait_sent("ob_two", 60)
    assert.equal(0, a.stop())
    assert.equal(0, b.stop())
    local got = H.kcat_consume(broker.bootstrap, "ob_two", nil)
    assert.equal(1000, #got)
    local seen = {}
    for _, m in ipairs(got) do
      assert.is_nil(seen[m.headers.id], "row " .. m.headers.id .. " twice")
      seen[m.headers.id] = true
    end
  end)

  it("shows pending rows, the oldest one's age and rows published on /metrics", function()
    local path = app("ob_metrics", "ob_metrics")
    create(path)
    pg.sql("INSERT INTO ob_metrics (key, payload, created_at) VALUES ('x', 'old', now() - interval '1 hour')")
    local port = H.free_port()
    assert.equal("ok", broker.control("down all"))
    local p = run(path, nil, "--http 127.0.0.1:" .. port)
    local ok, err = pcall(function()
      H.wait_until(function()
        local age = sample(port, "luka_outbox_oldest_pending_age_seconds")
        return age and age >= 3600 and sample(port, "luka_outbox_pending_rows") == 1
          and sample(port, "luka_outbox_failed_rounds_total") >= 1
      end, 20, "the pending row on /metrics")
    end)
    assert.equal("ok", broker.control("up all"))
    assert(ok, err)
    H.wait_until(function()
      return sample(port, "luka_outbox_published_total") == 1
        and sample(port, "luka_outbox_pending_rows") == 0
        and sample(port, "luka_outbox_oldest_pending_age_seconds") == 0
    end, 20, "the row published on /metrics")
    assert.equal("counter", H.metrics(port).types.luka_outbox_published)
    assert.equal(0, p.stop())
  end)
end)

describe("the outbox relay in the test kit", function()
  it("marks a row behind a failed one of its key unsent, and sends both again in order", function()
    pg.sql([[CREATE TABLE ob_kit (id bigserial PRIMARY KEY, topic text, key text, payload text,
      headers jsonb, created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);
      INSERT INTO ob_kit (key, payload) VALUES ('k1', 'a'), ('k1', 'b'), ('k2', 'c')]])
    local psql = ("PGPASSWORD=%s psql -X -q -At -h 127.0.0.1 -p %d -U %s -d %s -c "):format(
      pg.password, pg.port, pg.user, pg.db)
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "events" { topic = "ob_kit" }
luka.outbox "events" { db = os.getenv("OUTBOX_DB"), table = "ob_kit", publisher = "events", poll = "50ms" }
]], ([[
local test = require "luka.test"
local function sent()
  local f = io.popen(%q .. "'SELECT string_agg(id::text, $$,$$ ORDER BY id) FROM ob_kit WHERE sent_at IS NOT NULL'")
  local s = f:read("a"):gsub("%%s+$", "")
  f:close()
  return s
end
it("keeps per-key order over a failed publish", function()
  local app = test.load("app.lua", { env = { OUTBOX_DB = %q } })
  app:fail_publishes(1)
  local r = app:advance("50ms")
  assert.equal(1, r.fired)
  local ids = {}
  for i, m in ipairs(r.published) do ids[i] = m.headers.id .. "=" .. m.key .. ":" .. m.payload end
  assert.same({ "1=k1:a", "2=k1:b", "3=k2:c" }, ids)
  -- Row 1 failed: row 2 (same key) waits for it; row 3 went out.
  assert.equal("3", sent())
  r = app:advance("50ms")
  ids = {}
  for i, m in ipairs(r.published) do ids[i] = m.headers.id end
  assert.same({ "1", "2" }, ids)
  assert.equal("1,2,3", sent())
  r = app:advance("50ms")
  assert.same({}, r.published)
  app:close()
end)
]]):format(psql, pg.url))
    H.assert_luka_test_passed(r, 1)
  end)
end)

describe("the example app with OUTBOX_DB", function()
  it("places orders in the database and its relay publishes them (luka test config/spec)", function()
    pg.sql("CREATE DATABASE shop", "postgres")
    local url = pg.url:gsub("/luka$", "/shop")
    local r = luka("outbox config/orders.lua --create", { OUTBOX_DB = url })
    assert(r.code == 0, r.stdout .. r.stderr)
    r = H.run(H.luka .. " test config/spec", { timeout = 120 })
    assert.truthy(r.stdout:find("1 pending", 1, true), r.stdout) -- without OUTBOX_DB
    r = luka("test config/spec", { OUTBOX_DB = url })
    assert(r.code == 0, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("12 successes / 0 failures / 0 errors / 0 pending", 1, true), r.stdout)
    assert.equal("2|2|0", pg.sql("SELECT (SELECT count(*) FROM shop_orders), (SELECT count(*) FROM orders_outbox), "
      .. "(SELECT count(*) FROM orders_outbox WHERE sent_at IS NULL)", "shop"))
  end)
end)

describe("the outbox relay under kill -9", function()
  local long = os.getenv("CHAOS_LONG")
  local rows, kills = long and 20000 or 2000, long and 10 or 4

  it(("publishes every one of %d rows at least once, each exactly once by distinct id"):format(rows), function()
    local path = app("ob_kill", "ob_kill")
    create(path)
    insert("ob_kill", rows, 50)
    local killed = 0
    for k = 1, kills do
      local before = pending("ob_kill")
      if before == 0 then break end
      -- Small rounds and a slow broker, so that the kill lands while rows
      -- are in flight: once some rows went out since it started.
      local p = run(path, { BATCH = "40" })
      H.wait_until(function() return pending("ob_kill") < before end, 20, "the relay to publish")
      H.sleep(0.02 * (k % 4))
      p.kill("KILL")
      p.wait(5)
      killed = killed + 1
    end
    assert.is_true(killed >= 2, "luka was killed " .. killed .. " time(s) only")
    local last = run(path)
    wait_sent("ob_kill", 60)
    assert.equal(0, last.stop())
    local got, err = H.kcat_consume(broker.bootstrap, "ob_kill", nil, { timeout = 60 })
    assert.is_nil(err)
    local distinct, n = {}, 0
    for _, m in ipairs(got) do
      local id = tonumber(m.headers.id)
      if not distinct[id] then n = n + 1 end
      distinct[id] = true
    end
    local lost = 0
    for id = 1, rows do lost = lost + (distinct[id] and 0 or 1) end
    if os.getenv("CHAOS_REPORT") then
      local f = assert(io.open(os.getenv("CHAOS_REPORT"), "a"))
      f:write(H.json_encode({ scenario = "outbox relay, kill -9", what = ("%d rows in PostgreSQL, luka killed %d times while relaying"):format(rows, killed),
        messages = rows, lost = lost, duplicates = #got - n, note = "read by kcat; distinct by id header" }), "\n")
      f:close()
    end
    assert.equal(0, lost)
    assert.equal(rows, n)
    assert.is_true(#got >= rows)
  end)
end)
