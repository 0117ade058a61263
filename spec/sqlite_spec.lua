-- luka.sqlite(path): queries with positional parameters, the type mapping
-- both ways, transactions that roll back on an error or a failed query,
-- clear errors, the path relative to the app, and the file let go of when
-- the state closes (a reload, or the end of a test).  Run through the
-- test kit (no broker); the file is read back with Python's sqlite3.
local H = require "support.helper"

local function py(dir, code)
  H.write_file(dir .. "/q.py", "import sqlite3, sys, json\n" .. code)
  local r = H.run(("cd %s && %s q.py"):format(H.q(dir), H.PY))
  assert(r.code == 0, r.stderr)
  return r.stdout
end

describe("luka.sqlite", function()
  it("runs queries with ? and ?N parameters and maps the types both ways", function()
    local r = H.luka_test([[
local luka = require "luka"
local db = luka.sqlite("t.db")
assert(db:exec([=[
  CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, flag INTEGER, doc TEXT, empty TEXT);
  CREATE TABLE u (x INTEGER);
]=]))
local function eq(want, got, what)
  if want ~= got then error(("%s: want %s, got %s"):format(what, tostring(want), tostring(got)), 2) end
end
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  local r = assert(db:query("INSERT INTO t (name, score, data, flag, doc, empty) VALUES (?, ?, ?, ?, ?, ?)",
    msg.name, 2.5, "a\0b", true, { list = { 1, 2 } }, luka.null))
  eq(1, r.count, "count")
  eq(1, r.last_insert_id, "last_insert_id")
  local rows = assert(db:query("SELECT * FROM t WHERE id = ?1 AND name = ?2", 1, msg.name))
  eq(1, #rows, "rows")
  local row = rows[1]
  eq("integer", math.type(row.id), "id type")
  eq("ann", row.name, "name")
  eq(2.5, row.score, "score")
  eq("a\0b", row.data, "data")
  eq(1, row.flag, "flag")
  eq(2, luka.json.decode(row.doc).list[2], "doc")
  eq(luka.null, row.empty, "empty")
  eq(nil, rows.count, "rows.count of a select")
  eq(0, #assert(db:query("SELECT * FROM t WHERE id = ?", 99)), "no rows")
  eq(1, assert(db:query("UPDATE t SET flag = ? WHERE id > ?", false, 0)).count, "update count")
  eq(0, db:query("SELECT flag FROM t")[1].flag, "false")
  eq(3, db:query("SELECT ? + ? AS n", 1, 2)[1].n, "sum")
  eq(0.5, db:query("SELECT ? AS n", 0.5)[1].n, "real")
  eq(luka.null, db:query("SELECT ? AS n", nil)[1].n, "nil")
  eq("blob", db:query("SELECT typeof(CAST(? AS BLOB)) AS t", "x")[1].t, "blob type")
  -- The same SQL again runs the statement kept from before.
  for i = 1, 50 do assert(db:query("INSERT INTO u (x) VALUES (?)", i)) end
  eq(1275, db:query("SELECT sum(x) AS s FROM u")[1].s, "sum of u")
end }
]], [[
local test = require "luka.test"
it("maps", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", { name = "ann" })
  assert.equal("handled", r.outcome, r.error)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("commits a transaction, and rolls it back when its function raises or a query fails", function()
    local r = H.luka_test([[
local luka = require "luka"
local db = luka.sqlite("t.db")
assert(db:exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
local function count() return db:query("SELECT count(*) AS n FROM t")[1].n end
local function has(s, pattern, plain)
  if not (s and s:find(pattern, 1, plain)) then error(("%q does not match %q"):format(tostring(s), pattern), 2) end
end
luka.consumer "c" { topics = { "in" }, handle = function()
  local a, b = db:transaction(function(tx)
    assert(tx:query("INSERT INTO t (v) VALUES (?)", "one"))
    assert(tx:query("INSERT INTO t (v) VALUES (?)", "two"))
    return "done", 2
  end)
  assert(a == "done" and b == 2, "the function's results")
  assert(count() == 2, "committed")
  assert(db:transaction(function() end) == true, "true without results")

  local ok, err = db:transaction(function(tx)
    tx:query("INSERT INTO t (v) VALUES (?)", "three")
    error("changed my mind")
  end)
  assert(ok == nil)
  has(err, "sqlite t.db: transaction rolled back: .*changed my mind")
  assert(count() == 2, "rolled back on an error")

  ok, err = db:transaction(function(tx)
    tx:query("INSERT INTO t (v) VALUES (?)", "four")
    tx:query("INSERT INTO t (v) VALUES (?)", nil) -- NOT NULL: fails, and dooms the transaction
    tx:query("INSERT INTO t (v) VALUES (?)", "five")
  end)
  assert(ok == nil)
  has(err, "transaction rolled back: sqlite t.db: NOT NULL constraint failed: t.v", true)
  assert(count() == 2, "rolled back on a failed query")

  -- A transaction inside another is refused, and the outer rolls back.
  ok, err = db:transaction(function(tx) tx:transaction(function() end) end)
  assert(ok == nil)
  has(err, "already inside a transaction of 't.db'", true)
  assert(count() == 2, "usable after all that")
end }
]], [[
local test = require "luka.test"
it("commits or rolls back", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", {})
  assert.equal("handled", r.outcome, r.error)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("reports errors naming the file, and refuses misuse", function()
    local r = H.luka_test([[
local luka = require "luka"
local db = luka.sqlite("errs.db")
local function has(s, pattern, plain)
  if not (s and s:find(pattern, 1, plain)) then error(("%q does not match %q"):format(tostring(s), pattern), 2) end
end
luka.consumer "c" { topics = { "in" }, handle = function()
  local rows, err = db:query("SELECT * FROM missing")
  assert(rows == nil)
  has(err, "sqlite errs.db: prepare: no such table: missing", true)
  rows, err = db:query("SELEC 1")
  has(err, 'sqlite errs.db: prepare: near "SELEC": syntax error', true)
  local ok, e = pcall(db.query, db, "SELECT 1; SELECT 2")
  has(e, "give one statement at a time", true)
  ok, e = pcall(db.query, db, "SELECT ?", 1, 2)
  has(e, "the statement has 1 parameter(s) (? or ?N), 2 value(s) given", true)
  ok, e = pcall(db.query, db, "SELECT ?", print)
  has(e, "parameter 1: a function cannot be stored", true)
  ok, err = db:exec("CREATE TABLE x (a); CREATE TABLE x (a)")
  assert(ok == nil)
  has(err, "sqlite errs.db: table x already exists", true)
  ok, e = pcall(luka.sqlite, "/nonexistent-dir/x.db")
  has(e, "luka.sqlite('/nonexistent-dir/x.db'): unable to open database file", true)
  db:close()
  ok, e = pcall(db.query, db, "SELECT 1")
  has(e, "the database 'errs.db' is closed", true)
end }
]], [[
local test = require "luka.test"
it("explains", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", {})
  assert.equal("handled", r.outcome, r.error)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("opens the file next to the app in WAL mode, and lets go of it when the state closes", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local db = luka.sqlite("data/app.db")
assert(db:exec("CREATE TABLE IF NOT EXISTS hits (n INTEGER)"))
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  assert(db:query("INSERT INTO hits (n) VALUES (?)", msg.n))
end }
]])
    os.execute("mkdir -p " .. H.q(dir .. "/data") .. " " .. H.q(dir .. "/specs"))
    H.write_file(dir .. "/specs/x_spec.lua", [[
local test = require "luka.test"
it("writes", function()
  for round = 1, 2 do
    local app = test.load("../app.lua")
    assert.equal("handled", app:deliver("c", { n = round }).outcome)
    -- WAL mode: the log is beside the file while a connection is open...
    assert.is_not_nil(io.open("../data/app.db-wal"))
    app:close()
    -- ...and goes when the last one closes: closing the state closed it.
    assert.is_nil(io.open("../data/app.db-wal"))
  end
end)
]])
    local r = H.run(("cd %s/specs && %s test ."):format(H.q(dir), H.luka))
    H.assert_luka_test_passed(r, 1)
    local out = py(dir, [[
db = sqlite3.connect("data/app.db")
print(db.execute("pragma journal_mode").fetchone()[0], db.execute("select sum(n) from hits").fetchone()[0])
]])
    assert.truthy(out:find("wal 3", 1, true), out)
  end)
end)
