-- luka: the module app scripts require.  Declarations come from luka.dsl,
-- runtime calls from the host's C half (luka.host); this file joins them.
local dsl = require "luka.dsl"
local host = require "luka.host"

local luka = {
  broker = dsl.broker,
  publisher = dsl.publisher,
  consumer = dsl.consumer,
  channel = dsl.channel,
  topic = dsl.topic,
  -- luka.outbox "name" { db, table, publisher, batch, poll }: publish the
  -- rows of an outbox table (README, "The transactional outbox").
  outbox = dsl.outbox,
  runtime = dsl.runtime,
  publish = host.publish,
  fatal = host.fatal,
  seek = host.seek,
  null = host.null,
  json = host.json,
  now = host.now,
  -- http.request{ method, url, headers, body, timeout }: waits, in a handler.
  http = host.http,
  -- log.info(msg, fields), and debug, warn, error: luka's logger, with the
  -- context of the message being handled.
  log = host.log,
  -- A table kept across hot reloads (as JSON: plain data only).
  state = host.state,
  -- counter(name, help, labels), gauge(...), histogram(name, help, labels,
  -- buckets): exported on /metrics as luka_app_<name>, kept across reloads.
  metrics = host.metrics,
  -- sqlite(path): a SQLite database; its calls block the loop.
  sqlite = host.sqlite,
}

-- Intervals are milliseconds or durations such as "250ms", "5s", "2m".
local function interval(fname, value)
  local ms, err = dsl.duration(value)
  if not ms or ms <= 0 then
    error(("luka.%s: %s"):format(fname, err or "the interval must be positive"), 3)
  end
  return ms
end

-- Call fn every interval, from when the host starts.
function luka.every(value, fn)
  return host.timer(interval("every", value), true, fn)
end

-- Call fn once, after the interval.
function luka.after(value, fn)
  return host.timer(interval("after", value), false, fn)
end

-- A Redis client for handlers: client:call(cmd, ...) waits for the reply
-- without holding up other messages (README, "Redis").
function luka.redis(url, opts)
  if type(url) ~= "string" then
    error(("luka.redis: the url must be a string, got %s"):format(type(url)), 2)
  end
  local o, err = dsl.call_options("redis", opts)
  if not o then error("luka.redis: " .. err, 2) end
  local client, why = host.redis(url, o.timeout, o.pool)
  if not client then error("luka.redis: " .. why, 2) end
  return client
end

-- A PostgreSQL client for handlers: db:query(sql, ...) and
-- db:transaction(fn) wait for the server without holding up other
-- messages (README, "PostgreSQL calls").
function luka.pg(url, opts)
  if type(url) ~= "string" then
    error(("luka.pg: the url must be a string, got %s"):format(type(url)), 2)
  end
  local o, err = dsl.call_options("pg", opts)
  if not o then error("luka.pg: " .. err, 2) end
  local client, why = host.pg(url, o.timeout, o.pool)
  if not client then error("luka.pg: " .. why, 2) end
  return client
end

-- Wait for a duration inside a handler; other messages run meanwhile.
-- Returns true, or nil and why not (outside a handler).
function luka.sleep(value)
  local ms, err = dsl.duration(value)
  if not ms then error(("luka.sleep: %s"):format(err), 2) end
  return host.sleep(ms)
end

return luka
