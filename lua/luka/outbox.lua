-- luka.outbox: the relay of the transactional outbox.  Each outbox the app
-- declared gets a timer (every `poll`); a call of it works rounds, each in
-- one transaction:
--
--   1. pg_try_advisory_xact_lock on the table's key: one relay at a time
--      works a table, whichever luka instance it runs in (that also keeps
--      per-key order across instances); the others skip the round;
--   2. SELECT the first `batch` unsent rows in id order, FOR UPDATE SKIP
--      LOCKED;
--   3. publish them all through the publisher, each with its row id as the
--      `id` header, and wait until the broker answered every one
--      (host.outbox_send, api/outbox.c);
--   4. UPDATE sent_at for the rows acknowledged, except those behind a
--      failed row of the same key (they go again, in order, next round);
--   5. COMMIT.
--
-- A crash anywhere before the COMMIT leaves the rows unsent, to be
-- published again: at least once, never lost.  Calls of one timer never
-- overlap (a tick that comes while a round runs is skipped), and a call
-- keeps working rounds while they come back full, for up to BUDGET_S.
local host = require "luka.host"
local dsl = require "luka.dsl"

local M = {}

-- Seconds a timer call may keep working full rounds before it lets the
-- next tick go on: the runtime timeout bounds a call.
local BUDGET_S = 1

-- The advisory lock's key for a table: FNV-1a over its name, 64 bits (Lua
-- integers wrap), so every instance computes the same.
local function lock_key(tbl)
  local h = -3750763034362895579 -- 14695981039346656037 as a signed 64-bit integer
  for i = 1, #tbl do
    h = h ~ tbl:byte(i)
    h = h * 1099511628211
  end
  return h
end

local function relay(o, luka)
  local where = dsl.redact_url(o.db)
  local null = host.null
  local lock = lock_key("luka.outbox:" .. o.table)
  local select_rows = ("SELECT id, topic, key, payload, headers FROM %s WHERE sent_at IS NULL "
    .. "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"):format(o.table)
  local mark_sent = ("UPDATE %s SET sent_at = now() WHERE id = ANY($1::bigint[])"):format(o.table)
  local look = ("SELECT count(*) AS pending, "
    .. "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age "
    .. "FROM %s WHERE sent_at IS NULL"):format(o.table)
  local db

  -- One round: returns rows read, rows marked sent, the trouble (a
  -- sentence) or nil, and whether the database failed.
  local function round()
    local read, marked, trouble = 0, 0, nil
    local ok, err = db:transaction(function(tx)
      local got = assert(tx:query("SELECT pg_try_advisory_xact_lock($1::bigint) AS locked", lock))
      if not got[1].locked then return true end -- another relay works the table now
      local rows = assert(tx:query(select_rows, o.batch))
      read = rows.count
      if read == 0 then return true end
      local results = assert(host.outbox_send(o.publisher, rows))
      local ids, blocked, failed, first = {}, {}, 0, nil
      for i = 1, read do
        local row, res = rows[i], results[i]
        local key = row.key ~= null and row.key or nil
        if res == true and not (key and blocked[key]) then
          ids[#ids + 1] = row.id
        else
          -- Later rows of its key must not be marked sent before it.
          if key then blocked[key] = true end
          if res ~= true then
            failed = failed + 1
            first = first or ("row %d: %s"):format(row.id, res)
          end
        end
      end
      if failed > 0 then
        trouble = ("%d of %d row(s) not acknowledged by the broker (%s)"):format(failed, read, first)
      end
      if #ids > 0 then assert(tx:query(mark_sent, "{" .. table.concat(ids, ",") .. "}")) end
      marked = #ids
      return true
    end)
    if not ok then return read, 0, "database: " .. tostring(err), true end
    return read, marked, trouble, false
  end

  return function()
    if not db then
      local made, client = pcall(luka.pg, o.db, { pool = 1, timeout = "5s" })
      if not made then
        host.outbox_report(o.name, where, 0, nil, nil, tostring(client))
        return
      end
      db = client
    end
    local start = host.now()
    local published, trouble, dead = 0, nil, false
    repeat
      local read, marked
      read, marked, trouble, dead = round()
      published = published + marked
    until trouble or read < o.batch or host.now() - start >= BUDGET_S
    local pending, age
    if not dead then
      local seen = db:query(look)
      if seen then pending, age = seen[1].pending, seen[1].age end
    end
    host.outbox_report(o.name, where, published, pending, age, trouble)
  end
end

-- Start a relay per outbox the app script declared (api/outbox.c calls
-- this once the state is bound to a host).
function M.start()
  local outboxes = dsl.registry().outboxes
  if #outboxes == 0 then return end
  local luka = require "luka"
  for _, o in ipairs(outboxes) do
    host.outbox_report(o.name, dsl.redact_url(o.db), 0)
    host.timer(o.poll, true, relay(o, luka))
  end
end

M.lock_key = lock_key

return M
