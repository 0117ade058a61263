-- luka.pg: handlers query a real PostgreSQL (spec/support/pg.lua starts
-- one) and wait for the result without holding up the loop; results map
-- to Lua values by type, failures to nil, err, and a server that restarts
-- or a handler out of time leaves luka running.
local H = require "support.helper"
local PG = require "support.pg"

local broker, pg

-- Writes an app into a fresh directory and returns its path and its
-- record file.  The app gets `record(...)`, which appends its arguments as
-- a JSON line to $OUT, nil written as "<nil>" and luka.null as "<null>".
local function app(body)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(...)
  local t = table.pack(...)
  for i = 1, t.n do
    if t[i] == nil then t[i] = "<nil>" elseif t[i] == luka.null then t[i] = "<null>" end
  end
  t.n = nil
  out:write(luka.json.encode(luka.json.array(t)), "\n")
end
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
]] .. body)
  return dir .. "/app.lua", dir .. "/out.jsonl"
end

local function run(path, out, args)
  return H.spawn(("%s run %s --brokers %s %s"):format(H.luka, path, broker.bootstrap, args or ""),
    { env = { OUT = out } })
end

local function produce(topic, values)
  local msgs = {}
  for i, v in ipairs(values) do msgs[i] = { key = "k" .. i, value = v } end
  H.kcat_produce(broker.bootstrap, topic, msgs)
end


-- PostgreSQL start-up and restarts are slower than a broker's: 30 s.
local function wait_named(out, name, n, timeout)
  return H.wait_named(out, name, n, timeout or 30)
end

-- Every record, keyed by its first field (the last of each name wins).
local function by_name(out)
  local got = {}
  for _, r in ipairs(H.jsonl(out)) do got[r[1]] = r end
  return got
end

setup(function()
  broker = H.broker_start { topics = { "basic:1", "types:1", "tx:1", "slow:1", "pool:1", "restart:1",
    "bad:1", "limit:1", "stop:1", "many:1", "txlimit:1", "reload:1" } }
  pg = PG.start()
end)
teardown(function()
  pg.destroy()
  broker.stop()
end)

describe("luka.pg", function()
  it("runs statements with $n parameters and returns rows keyed by column, with count", function()
    pg.sql("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
    local path, out = app(([[
local db = luka.pg("%s", { pool = 2 })
record("load", db:query("SELECT 1"))
luka.consumer "c" { topics = { "basic" }, config = config, handle = function(msg)
  local ins = db:query("INSERT INTO items (id, name, qty) VALUES ($1, $2, $3), ($4, $5, $6)",
    1, msg.name, 5, 2, "bolt", 7)
  record("insert", #ins, ins.count)
  local rows = db:query("SELECT id, name, qty FROM items WHERE qty > $1 ORDER BY id", 0)
  record("select", rows.count, #rows, rows[1], rows[2])
  local upd = db:query("UPDATE items SET qty = qty + 1")
  record("update", upd.count)
  record("none", db:query("SELECT * FROM items WHERE id = $1", 99).count)
  record("missing", db:query("SELECT * FROM no_such_table"))
  record("syntax", db:query("SELEC 1"))
  record("copy", db:query("COPY items TO STDOUT"))
  record("two", db:query("SELECT 1; SELECT 2"))
  record("notice", db:query("DROP TABLE IF EXISTS nothing_here").count)
  record("after", db:query("SELECT count(*) AS n FROM items")[1].n)
  local ok, err = pcall(function() return db:query("SELECT $1", function() end) end)
  record("badarg", ok, err)
  ok, err = pcall(function() return db:query() end)
  record("nosql", ok, err)
  record("string", tostring(db))
  local other = luka.pg("%s")
  other:close()
  record("closed", other:query("SELECT 1"))
end }
]]):format(pg.url, pg.url))
    produce("basic", { '{"name":"nut"}' })
    local p = run(path, out)
    wait_named(out, "closed")
    assert.equal(0, p.stop())
    local got = by_name(out)
    local where = "127.0.0.1:" .. pg.port .. "/luka"
    assert.equal("<nil>", got.load[2])
    assert.matches("^pg " .. where .. ": SELECT 1: it can only wait inside a handler", got.load[3])
    assert.same({ "insert", 0, 2 }, got.insert)
    assert.same({ "select", 2, 2, { id = 1, name = "nut", qty = 5 }, { id = 2, name = "bolt", qty = 7 } },
      got.select)
    assert.same({ "update", 2 }, got.update)
    assert.same({ "none", 0 }, got.none)
    assert.equal("<nil>", got.missing[2])
    assert.equal("pg " .. where .. ': ERROR 42P01: relation "no_such_table" does not exist', got.missing[3])
    assert.matches("^pg " .. where .. ": ERROR 42601: syntax error at or near \"SELEC\"", got.syntax[3])
    assert.matches("^pg " .. where .. ": COPY items TO STDOUT: the connection was lost: COPY is not supported", got.copy[3])
    assert.matches("^pg " .. where .. ": ERROR 42601: cannot insert multiple commands into a prepared statement", got.two[3])
    assert.same({ "notice", 0 }, got.notice)
    assert.same({ "after", 2 }, got.after)
    assert.is_nil(p.output():find("NOTICE:", 1, true))
    assert.is_false(got.badarg[2])
    assert.matches("bad argument #2 to 'query' %(nil, luka.null, boolean, number, string or table expected, got function%)",
      got.badarg[3])
    assert.is_false(got.nosql[2])
    assert.matches("bad argument #1 to 'query' %(string expected, got no value%)", got.nosql[3])
    assert.equal("luka.pg " .. where, got.string[2])
    assert.matches("the client is closed", got.closed[3])
    assert.equal("1|nut|6\n2|bolt|8", pg.sql("SELECT id, name, qty FROM items ORDER BY id"))
  end)

  it("maps parameters and result types: NULL, bool, int8, float, numeric, json, jsonb, bytea, text", function()
    local path, out = app(([[
local db = luka.pg("%s")
luka.consumer "c" { topics = { "types" }, config = config, handle = function(msg)
  local r = db:query([=[SELECT $1::int8 AS big, $2::text AS nothing, $3::text AS nul, $4::bool AS yes,
      $5::float8 AS f, 12345678901234567890.5::numeric AS num, $6::jsonb AS doc,
      '{"a":[1,null,"x"]}'::json AS j, '\x00ff41'::bytea AS bin, 'héllo'::varchar AS txt,
      3::int2 AS small, 1.5::float4 AS f4, 'a b'::text AS spaced, NULL::int AS nullint,
      $7::text AS str, $8::int AS fromfloat, '2024-01-02'::date AS day]=],
    9007199254740993, nil, luka.null, true, 2.25, { k = "v", list = { 1, 2 } }, "s", 4.0)
  local row = r[1]
  record("types", math.type(row.big), row.big, row.nothing, row.nul, row.yes, row.f, row.num,
    row.doc, row.j.a[1], row.j.a[2] == luka.null, row.j.a[3], #row.bin,
    (row.bin:gsub(".", function(c) return ("%%02x"):format(c:byte()) end)), row.txt,
    math.type(row.small), row.f4, row.spaced, row.nullint, row.str, row.fromfloat, row.day)
  record("false", db:query("SELECT false AS b, $1::bool AS p", false)[1])
  local e = db:query("SELECT 1 WHERE false")
  record("empty", #e, e.count)
end }
]]):format(pg.url))
    produce("types", { "{}" })
    local p = run(path, out)
    wait_named(out, "empty")
    assert.equal(0, p.stop())
    local got = by_name(out)
    assert.same({ "types", "integer", 9007199254740993, "<null>", "<null>", true, 2.25,
      "12345678901234567890.5", { k = "v", list = { 1, 2 } }, 1, true, "x", 3, "00ff41",
      "héllo", "integer", 1.5, "a b", "<null>", "s", 4, "2024-01-02" }, got.types)
    assert.same({ "false", { b = false, p = false } }, got["false"])
    assert.same({ "empty", 0, 0 }, got.empty)
  end)

  it("commits a transaction, and rolls it back when its function raises or one of its statements fails", function()
    pg.sql("CREATE TABLE accounts (name text PRIMARY KEY, balance int CHECK (balance >= 0))")
    pg.sql("INSERT INTO accounts VALUES ('a', 10), ('b', 0)")
    local path, out = app(([[
local db = luka.pg("%s", { pool = 1 })
local function move(tx, amount)
  assert(tx:query("UPDATE accounts SET balance = balance + $1 WHERE name = 'b'", amount))
  local r, err = tx:query("UPDATE accounts SET balance = balance - $1 WHERE name = 'a'", amount)
  return r and r.count, err
end
luka.consumer "c" { topics = { "tx" }, config = config, handle = function(msg)
  record("commit", db:transaction(function(tx)
    local n = move(tx, 3)
    return "moved", n
  end))
  record("raise", db:transaction(function(tx)
    move(tx, 2)
    error("changed my mind")
  end))
  local seen
  record("failed", db:transaction(function(tx)
    local n, err = move(tx, 100)   -- the CHECK fails
    seen = err
    return "not committed"
  end))
  record("seen", seen)
  record("badarg", pcall(db.transaction, db, 42))
  record("outside", db:transaction(function(tx) _G.kept = tx end))
  record("kept", pcall(_G.kept.query, _G.kept, "SELECT 1"))
  record("after", db:query("SELECT name, balance FROM accounts ORDER BY name"))
end }
]]):format(pg.url))
    produce("tx", { "{}" })
    local p = run(path, out)
    wait_named(out, "after")
    assert.equal(0, p.stop())
    local got = by_name(out)
    assert.same({ "commit", "moved", 1 }, got.commit)
    assert.equal("<nil>", got.raise[2])
    assert.matches("changed my mind", got.raise[3])
    assert.equal("<nil>", got.failed[2])
    assert.matches("^pg 127.0.0.1:%d+/luka: ERROR 23514: new row for relation \"accounts\" violates check constraint",
      got.failed[3])
    assert.equal(got.failed[3], got.seen[2])
    assert.is_false(got.badarg[2])
    assert.matches("db:transaction expects a function, got number", got.badarg[3])
    -- A function that returns nothing: true after the commit.
    assert.same({ "outside", true }, got.outside)
    assert.is_false(got.kept[2])
    assert.matches("tx:query outside its transaction's function", got.kept[3])
    assert.equal("a|7\nb|3", pg.sql("SELECT name, balance FROM accounts ORDER BY name"))
  end)

  it("does not block the loop while a statement waits: other messages run and /healthz answers", function()
    local http = H.free_port()
    local path, out = app(([[
local db = luka.pg("%s")
luka.consumer "c" { topics = { "slow" }, config = config, concurrency = 4, handle = function(msg)
  record("start", msg.n)
  if msg.n == 1 then
    -- Waits for the lock the spec's session holds, then sleeps.
    record("slow", msg.n, db:query("SELECT pg_advisory_lock(42), pg_sleep(0.2)")[1] ~= nil)
  else
    record("quick", msg.n, db:query("SELECT $1::int * 10 AS v", msg.n)[1].v)
  end
end }
]]):format(pg.url))
    local holder = pg.session("SELECT pg_advisory_lock(42)")
    produce("slow", { '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}' })
    local p = run(path, out, "--http 127.0.0.1:" .. http)
    -- The slow statement waits on the server...
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock(42), pg_sleep%'") == "1"
    end, 30, "the slow statement to wait for its lock")
    -- ...while the other messages are handled and the endpoint answers.
    local quick = wait_named(out, "quick", 3)
    local r = H.run(("curl -sf --max-time 5 http://127.0.0.1:%d/healthz"):format(http))
    assert.equal(0, r.code, r.stderr)
    assert.matches('"healthy":true', r.stdout)
    assert.same({}, H.named(out, "slow"))
    table.sort(quick, function(a, b) return a[2] < b[2] end)
    assert.same({ { "quick", 2, 20 }, { "quick", 3, 30 }, { "quick", 4, 40 } }, quick)
    holder.stop()
    assert.same({ "slow", 1, true }, wait_named(out, "slow")[1])
    assert.equal(0, p.stop())
    -- In the order of events: the slow one started first and ended last.
    local records = H.jsonl(out)
    assert.same({ "start", 1 }, records[1])
    assert.same({ "slow", 1, true }, records[#records])
  end)

  it("keeps at most pool connections: a call waits for a free one, or fails as pool exhausted after its timeout", function()
    pg.sql("CREATE TABLE go (x int)")
    local path, out = app(([[
local a = luka.pg("%s", { pool = 1, timeout = "20s" })
local b = luka.pg("%s", { pool = 1, timeout = "300ms" })
local holding = false
luka.consumer "c" { topics = { "pool" }, config = config, concurrency = 2, timeout = "60s", handle = function(msg)
  if msg.n == 1 then
    -- Holds the only connection of a and of b until the spec says go.
    record("committed", a:transaction(function(txa)
      return b:transaction(function(txb)
        assert(txa:query("SELECT 1"))
        holding = true
        while txb:query("SELECT count(*) AS n FROM go")[1].n == 0 do luka.sleep("20ms") end
        return "held"
      end)
    end))
  else
    while not holding do luka.sleep("10ms") end
    record("exhausted", b:query("SELECT 2"))
    record("waiting")
    record("waited", a:query("SELECT 3 AS v")[1].v)
  end
end }
]]):format(pg.url, pg.url))
    produce("pool", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    local exhausted = wait_named(out, "exhausted")[1]
    assert.equal("<nil>", exhausted[2])
    assert.equal(("pg 127.0.0.1:%d/luka: SELECT 2: the pool is exhausted: all 1 connections stayed busy for 300 ms (raise the pool option, or the timeout)")
      :format(pg.port), exhausted[3])
    wait_named(out, "waiting")
    -- One connection each, however many calls wait.
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'luka'") == "2"
    end, 10, "two connections of the app")
    assert.same({}, H.named(out, "waited"))
    pg.sql("INSERT INTO go VALUES (1)")
    assert.same({ "waited", 3 }, wait_named(out, "waited")[1])
    assert.equal(0, p.stop())
    local order = {}
    for _, r in ipairs(H.jsonl(out)) do order[#order + 1] = r[1] end
    assert.same({ "exhausted", "waiting", "committed", "waited" }, order)
    assert.same({ "committed", "held" }, H.named(out, "committed")[1])
  end)

  it("serves many concurrent calls through a small pool, in turn, on at most pool connections", function()
    local path, out = app(([[
local db = luka.pg("%s", { pool = 3, timeout = "30s" })
luka.consumer "c" { topics = { "many" }, config = config, concurrency = 20, ordering = "none",
  handle = function(msg)
    local r = assert(db:query("SELECT $1::int * 2 AS v, pg_backend_pid() AS pid, pg_sleep(0.01)", msg.n))
    record("done", msg.n, r[1].v, r[1].pid)
  end }
]]):format(pg.url))
    local values = {}
    for i = 1, 60 do values[i] = ('{"n":%d}'):format(i) end
    produce("many", values)
    local p = run(path, out)
    local done = wait_named(out, "done", 60)
    assert.equal(0, p.stop())
    local pids, n, seen = {}, 0, {}
    for _, r in ipairs(done) do
      assert.equal(r[2] * 2, r[3])
      seen[r[2]] = true
      if not pids[r[4]] then pids[r[4]] = true n = n + 1 end
    end
    for i = 1, 60 do assert.truthy(seen[i], "message " .. i) end
    assert.is_true(n >= 1 and n <= 3, n .. " connections")
  end)

  it("fails calls while the server is down or restarting, connects again after, and loses no message", function()
    pg.sql("CREATE TABLE seen (n int PRIMARY KEY)")
    local path, out = app(([[
local db = luka.pg("%s", { timeout = "30s" })
luka.consumer "c" { topics = { "restart" }, config = config,
  retry = { delayed = { initial = "200ms", multiplier = 1, attempts = 100 } },
  handle = function(msg)
    record("start", msg.n)
    if msg.lock then
      local r, err = db:query("SELECT pg_advisory_lock(7)")
      if not r then record("err", msg.n, err) error(err) end
      db:query("SELECT pg_advisory_unlock(7)")
    end
    local r, err = db:query("INSERT INTO seen VALUES ($1) RETURNING n", msg.n)
    if not r then record("err", msg.n, err) error(err) end
    record("ok", msg.n, r[1].n)
  end }
]]):format(pg.url))
    produce("restart", { '{"n":1}' })
    local p = run(path, out)
    wait_named(out, "ok")
    -- Down: the call fails, the message is retried until the server is back.
    pg.stop()
    produce("restart", { '{"n":2}' })
    local err = wait_named(out, "err")[1]
    assert.equal(2, err[2])
    assert.matches(("^pg 127.0.0.1:%d/luka: "):format(pg.port), err[3])
    assert.matches("the next call connects again", err[3])
    pg.start()
    wait_named(out, "ok", 2)
    -- Restarted while the pool's connection idles: the next call does not see the old one.
    pg.restart()
    produce("restart", { '{"n":3}' })
    wait_named(out, "ok", 3)
    assert.same({}, H.wait_until(function()
      local e = {}
      for _, r in ipairs(H.named(out, "err")) do if r[2] == 3 then e[#e + 1] = r end end
      return e
    end))
    -- Restarted while a statement waits: that call fails, its retry succeeds.
    local holder = pg.session("SELECT pg_advisory_lock(7)")
    produce("restart", { '{"n":4,"lock":true}' })
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock(7)%' AND application_name = 'luka'") == "1"
    end, 30, "the statement to wait for its lock")
    pg.restart()
    holder.stop()
    local ok4 = H.wait_until(function()
      for _, r in ipairs(H.named(out, "ok")) do if r[2] == 4 then return r end end
    end, 30, "message 4 handled")
    assert.same({ "ok", 4, 4 }, ok4)
    local lost -- its first failure (a retry during the restart may fail to connect)
    for _, r in ipairs(H.named(out, "err")) do if r[2] == 4 and not lost then lost = r end end
    assert.truthy(lost, "message 4's call failed during the restart")
    assert.matches("the connection was lost", lost[3])
    assert.truthy(p.alive())
    assert.equal(0, p.stop())
    assert.equal("1\n2\n3\n4", pg.sql("SELECT n FROM seen ORDER BY n"))
  end)

  it("gives a clear error for a dead server, a wrong password, an unknown database and a bad URL", function()
    local dead = H.free_port()
    local path, out = app(([[
local dead = luka.pg("postgres://luka:secret@127.0.0.1:%d/luka")
local wrong = luka.pg("postgres://luka:not-the-pw@127.0.0.1:%d/luka")
local nodb = luka.pg("postgres://luka:secret@127.0.0.1:%d/nope")
record("badurl", pcall(luka.pg, "mysql://luka:hunter2@127.0.0.1/x"))
record("badparam", pcall(luka.pg, "postgres://luka:hunter2@127.0.0.1/x?bogus=1"))
record("badopt", pcall(luka.pg, "postgres://127.0.0.1/x", { pool = 0 }))
record("nourl", pcall(luka.pg))
luka.consumer "c" { topics = { "bad" }, config = config, handle = function()
  record("dead", dead:query("SELECT 1"))
  record("wrong", wrong:query("SELECT 1"))
  record("nodb", nodb:query("SELECT 1"))
end }
]]):format(dead, pg.port, pg.port))
    produce("bad", { "{}" })
    local p = run(path, out)
    wait_named(out, "nodb")
    assert.equal(0, p.stop())
    local got = by_name(out)
    assert.is_false(got.badurl[2])
    assert.matches("luka.pg: the url must look like postgres://USER:PASSWORD@HOST:PORT/DB, got 'mysql://luka:%*%*%*%*%*%*%*%*@127.0.0.1/x'",
      got.badurl[3])
    assert.is_false(got.badparam[2])
    assert.matches("luka.pg: bad url 'postgres://luka:%*%*%*%*%*%*%*%*@127.0.0.1/x%?bogus=1': invalid URI query parameter: \"bogus\"",
      got.badparam[3])
    assert.is_false(got.badopt[2])
    assert.matches("pool", got.badopt[3])
    assert.matches("luka.pg: the url must be a string, got nil", got.nourl[3])
    assert.equal("<nil>", got.dead[2])
    assert.matches(("^pg 127.0.0.1:%d/luka: cannot connect: .*Connection refused Is the server running on that host and accepting TCP/IP connections%%?; check that PostgreSQL runs there"):format(dead),
      got.dead[3])
    assert.matches(("^pg 127.0.0.1:%d/luka: cannot connect: .*password authentication failed for user \"luka\""):format(pg.port),
      got.wrong[3])
    assert.is_nil(got.wrong[3]:find("not-the-pw", 1, true))
    assert.matches(("^pg 127.0.0.1:%d/nope: cannot connect: .*database \"nope\" does not exist"):format(pg.port),
      got.nodb[3])
    for _, r in ipairs(H.jsonl(out)) do
      for _, v in ipairs(r) do
        if type(v) == "string" then assert.is_nil(v:find("hunter2", 1, true), v) end
      end
    end
  end)

  it("cancels the statement of a handler that runs out of time, and its connection goes", function()
    local path, out = app(([[
local db = luka.pg("%s", { timeout = 0 })
luka.consumer "c" { topics = { "limit" }, config = config, timeout = "1s",
  error_channel = function(msg, meta, err) record("failed", msg.n, err.message) end,
  handle = function(msg)
    if msg.n == 1 then db:query("SELECT pg_sleep(60)") end
    record("next", msg.n, db:query("SELECT 2 AS v")[1].v)
  end }
]]):format(pg.url))
    produce("limit", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    local failed = wait_named(out, "failed")[1]
    assert.equal(1, failed[2])
    assert.matches(("timed out after 1000 ms waiting for pg SELECT pg_sleep%%(60%%) at 127.0.0.1:%d/luka"):format(pg.port),
      failed[3])
    assert.same({ "next", 2, 2 }, wait_named(out, "next")[1])
    -- The server was asked to cancel the statement: it does not run on.
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'") == "0"
    end, 10, "the statement to be cancelled")
    assert.truthy(p.alive())
    assert.equal(0, p.stop())
  end)

  it("rolls back the transaction of a handler stopped by its timeout, and frees its connection", function()
    pg.sql("CREATE TABLE notes (n int)")
    local path, out = app(([[
local db = luka.pg("%s", { pool = 1 })
luka.consumer "c" { topics = { "txlimit" }, config = config, timeout = "1s",
  error_channel = function(msg, meta, err) record("failed", msg.n, err.message) end,
  handle = function(msg)
    if msg.n == 1 then
      db:transaction(function(tx)
        assert(tx:query("INSERT INTO notes VALUES (1)"))
        luka.sleep("30s") -- the handler's timeout stops it here
      end)
    end
    record("count", msg.n, db:query("SELECT count(*) AS n FROM notes")[1].n)
  end }
]]):format(pg.url))
    produce("txlimit", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    local failed = wait_named(out, "failed")[1]
    assert.equal(1, failed[2])
    assert.matches("timed out after 1000 ms waiting for luka.sleep", failed[3])
    assert.same({ "count", 2, 0 }, wait_named(out, "count")[1])
    assert.equal(0, p.stop())
    assert.equal("0", pg.sql("SELECT count(*) FROM notes"))
  end)

  it("keeps a call of the old app answered across a reload, and closes the old app's connections", function()
    local path, out = app(([[
local db = luka.pg("%s", { pool = 2 })
luka.consumer "c" { topics = { "reload" }, config = config, concurrency = 2, handle = function(msg)
  if msg.n == 1 then
    record("locked", db:query("SELECT pg_advisory_lock(9) IS NOT NULL AS ok")[1].ok)
    db:query("SELECT pg_advisory_unlock(9)")
  else
    record("plain", msg.n, db:query("SELECT $1::int AS n", msg.n)[1].n)
  end
end }
]]):format(pg.url))
    local function conns()
      return tonumber(pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'luka'"))
    end
    local holder = pg.session("SELECT pg_advisory_lock(9)")
    produce("reload", { '{"n":1}', '{"n":2}' })
    local p = run(path, out)
    wait_named(out, "plain")
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'luka'") == "1"
    end, 30, "the old app's statement to wait for its lock")
    assert.equal(2, conns())
    p.kill("HUP")
    p.wait_output("reloaded", 10)
    holder.stop()
    assert.same({ "locked", true }, wait_named(out, "locked")[1])
    produce("reload", { '{"n":3}' })
    assert.same({ "plain", 3, 3 }, wait_named(out, "plain", 2)[2])
    -- The old app closed with its last call: its connections went with it.
    H.wait_until(function() return conns() == 1 end, 10, "the old app's connections to close")
    assert.equal(0, p.stop())
  end)

  it("stops with a statement still running: the handler is abandoned, the statement cancelled, luka exits", function()
    local path, out = app(([[
local db = luka.pg("%s", { timeout = 0 })
luka.consumer "c" { topics = { "stop" }, config = config, timeout = "120s", handle = function(msg)
  record("start", msg.n)
  record("done", db:query("SELECT pg_sleep(60)"))
end }
]]):format(pg.url))
    produce("stop", { '{"n":1}' })
    local p = run(path, out, "--drain-timeout 1s")
    wait_named(out, "start")
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'") == "1"
    end, 20, "the statement to run")
    assert.equal(0, p.stop(20))
    assert.same({}, H.named(out, "done"))
    H.wait_until(function()
      return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'") == "0"
    end, 10, "the statement to be cancelled")
  end)

  it("works in handlers under luka test, whose loop lets the calls wait", function()
    pg.sql("CREATE TABLE greetings (k text PRIMARY KEY, v text)")
    pg.sql("INSERT INTO greetings VALUES ('greeting', 'hi')")
    local r = H.luka_test(([[
local luka = require "luka"
local db = luka.pg("%s")
luka.consumer "c" { topics = { "t" }, handle = function(msg)
  local rows = assert(db:query("SELECT v FROM greetings WHERE k = $1", msg.key))
  if not rows[1] then error("no value") end
  assert(db:transaction(function(tx)
    return tx:query("INSERT INTO greetings VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2",
      msg.key .. "-seen", rows[1].v)
  end))
  luka.publish("out", { value = rows[1].v })
end }
luka.publisher "out" {}
]]):format(pg.url), [[
local test = require "luka.test"
describe("the app", function()
  it("reads PostgreSQL", function()
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
    assert.equal("hi", pg.sql("SELECT v FROM greetings WHERE k = 'greeting-seen'"))
  end)
end)
