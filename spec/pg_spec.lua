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

-- The records whose first field is name, in order.
local function named(out, name)
  local found = {}
  for _, r in ipairs(H.jsonl(out)) do
    if r[1] == name then found[#found + 1] = r end
  end
  return found
end

local function wait_named(out, name, n, timeout)
  return H.wait_until(function()
    local found = named(out, name)
    return #found >= (n or 1) and found
  end, timeout or 30, ("%d '%s' record(s)"):format(n or 1, name))
end

-- Every record, keyed by its first field (the last of each name wins).
local function by_name(out)
  local got = {}
  for _, r in ipairs(H.jsonl(out)) do got[r[1]] = r end
  return got
end

setup(function()
  broker = H.broker_start { topics = { "basic:1", "types:1", "tx:1", "slow:1", "pool:1", "restart:1",
    "bad:1", "limit:1" } }
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
end)

