-- A real PostgreSQL server for specs: a throw-away cluster made by initdb
-- in a temp dir and run by pg_ctl, listening on 127.0.0.1 on a free port,
-- its unix socket in the temp dir.  Used by spec/pg_spec.lua and by any
-- spec that needs a database (the outbox relay's).
--
--   local PG = require "support.pg"
--   local pg = PG.start()            -- or PG.start { password = "pw", db = "app" }
--   pg.url                           -- postgres://luka:PASSWORD@127.0.0.1:PORT/DB
--   pg.sql("CREATE TABLE t (id int)") -- runs SQL with psql; returns its output
--                                    -- (unaligned, tuples only), raises on error
--   pg.try_sql(sql)                  -- the same, returns H.run's result instead
--   pg.session(sql)                  -- a psql session that ran sql and stays
--                                    -- connected, holding its locks, until its
--                                    -- stop() (which ends its backend too)
--   pg.stop() / pg.start() / pg.restart()   -- the server (pg_ctl -m fast)
--   pg.destroy()                     -- stops it for good (also at the file's end)
--
-- initdb refuses to run as root: as root, the server runs as the postgres
-- user (runuser), and its directory is handed to it.  The server keeps
-- nothing safe (fsync off): it only lives for one spec file.
local H = require "support.helper"

local PG = {}

-- Debian's server programs live in /usr/lib/postgresql/VERSION/bin, not on
-- PATH; the newest version installed wins.
local function bindir()
  local r = H.run("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")
  local dir = r.stdout:gsub("%s+$", "")
  if dir ~= "" and H.run("test -x " .. H.q(dir .. "/initdb")).code == 0 then return dir end
  r = H.run("command -v initdb")
  dir = r.stdout:gsub("/initdb%s*$", "")
  assert(dir ~= "", "no PostgreSQL server found: install the postgresql package (scripts/setup test)")
  return dir
end

local root = H.run("id -u").stdout:match("^0%s") ~= nil

local live = {}

-- Runs cmd (a shell command) as the cluster's owner.
local function as_owner(cmd, opts)
  if root then cmd = "runuser -u postgres -- sh -c " .. H.q(cmd) end
  return H.run(cmd, opts)
end

function PG.start(opts)
  opts = opts or {}
  local bin = bindir()
  local user, password, db = opts.user or "luka", opts.password or "secret", opts.db or "luka"
  local port = opts.port or H.free_port()
  local dir = H.tmpdir()
  local data, run, log = dir .. "/data", dir .. "/run", dir .. "/run/server.log"
  assert(os.execute(("mkdir -p %s %s && printf '%%s\\n' %s > %s"):format(H.q(data), H.q(run),
    H.q(password), H.q(dir .. "/pwfile"))))
  if root then
    -- The temp dir is root's (mode 700): let postgres through to its own.
    assert(os.execute(("chmod 711 %s && chown -R postgres: %s %s %s"):format(H.q(dir), H.q(data),
      H.q(run), H.q(dir .. "/pwfile"))))
  end
  local r = as_owner(("%s/initdb -D %s -U %s --pwfile=%s --auth-local=trust --auth-host=scram-sha-256 -N -E UTF8 --locale=C")
    :format(bin, H.q(data), H.q(user), H.q(dir .. "/pwfile")), { timeout = 120 })
  assert(r.code == 0, "initdb failed: " .. r.stdout .. r.stderr)
  local conf = table.concat({
    "listen_addresses = '127.0.0.1'",
    ("port = %d"):format(port),
    ("unix_socket_directories = '%s'"):format(run),
    "fsync = off", "synchronous_commit = off", "full_page_writes = off",
    "max_connections = 50", "shared_buffers = 16MB", "logging_collector = off",
  }, "\n")
  local f = assert(io.open(data .. "/postgresql.conf", "a"))
  f:write("\n", conf, "\n")
  f:close()

  local pg = { port = port, user = user, password = password, db = db, dir = dir, data = data,
    socket_dir = run, log = log, bin = bin,
    url = ("postgres://%s:%s@127.0.0.1:%d/%s"):format(user, password, port, db) }
  local up = false

  local function ctl(args)
    local res = as_owner(("%s/pg_ctl -D %s -l %s -w -t 60 %s"):format(bin, H.q(data), H.q(log), args),
      { timeout = 90 })
    assert(res.code == 0, ("pg_ctl %s failed: %s%s\n%s"):format(args, res.stdout, res.stderr,
      H.read_file(log) or ""))
  end

  -- psql over TCP as the cluster's user; -X ignores any ~/.psqlrc.
  function pg.try_sql(sql, dbname)
    return H.run(("PGPASSWORD=%s psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U %s -d %s")
      :format(H.q(password), port, H.q(user), H.q(dbname or db)), { input = sql, timeout = 60 })
  end

  function pg.sql(sql, dbname)
    local res = pg.try_sql(sql, dbname)
    assert(res.code == 0, "psql failed: " .. res.stderr .. "\nSQL: " .. sql)
    return (res.stdout:gsub("\n$", ""))
  end

  local sessions = 0
  function pg.session(sql)
    sessions = sessions + 1
    local name = ("luka-spec-session-%d"):format(sessions)
    local proc = H.spawn(("psql -X -q -h 127.0.0.1 -p %d -U %s -d %s -c %s -c %s"):format(port, H.q(user),
      H.q(db), H.q(sql), H.q("SELECT pg_sleep(3600)")), { env = { PGPASSWORD = password, PGAPPNAME = name } })
    H.wait_until(function()
      assert(proc.alive(), "psql exited: " .. proc.output())
      return pg.sql(("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' AND query LIKE '%%pg_sleep(3600)%%'")
        :format(name)) == "1"
    end, 20, "the psql session " .. name)
    -- The server does not notice a closed client while it runs a
    -- statement: end the backend itself.
    return { proc = proc, name = name, stop = function()
      if up then
        pg.sql(("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '%s'")
          :format(name))
      end
      return proc.stop()
    end }
  end

  function pg.start()
    if up then return end
    ctl("start")
    up = true
  end

  function pg.stop()
    if not up then return end
    ctl("-m fast stop")
    up = false
  end

  function pg.restart()
    ctl("-m fast restart")
    up = true
  end

  function pg.running() return up end

  function pg.destroy()
    live[pg] = nil
    if up then
      as_owner(("%s/pg_ctl -D %s -w -t 30 -m immediate stop"):format(bin, H.q(data)), { timeout = 40 })
      up = false
    end
  end

  live[pg] = true
  pg.start()
  if db ~= "postgres" then pg.sql(("CREATE DATABASE %s"):format(db), "postgres") end
  return pg
end

-- Stop every server still running before the helper removes the temp dirs.
function PG.destroy_all()
  for pg in pairs(live) do pcall(pg.destroy) end
end

do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    -- Ahead of helper.lua's cleanup, which removes the directories.
    busted.subscribe({ "file", "end" }, function()
      PG.destroy_all()
      return nil, true
    end, { priority = 1 })
  end
  PG._sentinel = setmetatable({}, { __gc = function() pcall(PG.destroy_all) end })
end

return PG
