-- luka.dsl: the declarations an app script makes (luka.broker, luka.publisher,
-- luka.consumer, luka.channel), checked against one option schema and collected
-- into the registry the C host reads to create its producers and consumers.

local M = {}

-- The most messages an endpoint holds in flight (MAX_INFLIGHT in
-- src/kafka/consumer.c): a batch cannot be larger.
M.BATCH_MAX = 10000

-- Suggestions -------------------------------------------------------------

-- Levenshtein distance; it only serves to suggest the name the user meant.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- Returns " (did you mean 'x'?)" for the closest of names, or "" when none is
-- close enough to be a plausible typo (2 edits, or a third of a long name).
local function suggest(word, names)
  local best, best_d
  for _, name in ipairs(names) do
    local d = distance(word, name)
    if d <= math.max(2, #name // 3) and (best_d == nil or d < best_d) then
      best, best_d = name, d
    end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

-- Option types ------------------------------------------------------------

-- A type is a line of documentation plus a check.  check(value, option)
-- returns the value to store (converted or copied), or nil and a message; a
-- nil message means the generic "option 'x' must be <doc>, got <type>".

local TEXT = { doc = "a non-empty string", check = function(v, opt)
  if type(v) ~= "string" then return nil end
  if v == "" then return nil, ("option '%s' is empty"):format(opt) end
  return v
end }

local FUNCTION = { doc = "a function", check = function(v)
  if type(v) == "function" then return v end
end }

local KEY = { doc = "a payload field name or a function(payload) returning the key",
  check = function(v, opt)
    if type(v) == "function" then return v end
    return TEXT.check(v, opt)
  end }

local TOPICS = { doc = "a list of topic names", check = function(v, opt)
  if type(v) ~= "table" then return nil end
  -- Only the keys 1..#v may be present, so a map or a list with holes is
  -- reported instead of being silently truncated.
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then return nil end
  end
  if #v == 0 then return nil, ("'%s' is empty: list at least one topic"):format(opt) end
  local list = {}
  for i = 1, #v do
    if type(v[i]) ~= "string" or v[i] == "" then
      return nil, ("option '%s' item %d must be a topic name, got %s")
        :format(opt, i, v[i] == "" and "an empty string" or type(v[i]))
    end
    list[i] = v[i]
  end
  return list
end }

-- The librdkafka properties luka sets itself, because what it promises
-- depends on them.  A config table or a LUKA_KAFKA_* variable that sets one
-- is refused, with the way to get what was meant.  clients: the clients
-- luka sets it on ("consumer", "producer", "all", or "broker": only the
-- broker-wide config and LUKA_KAFKA_*, so that one publisher or consumer may
-- still talk to another cluster); fix: what to do
-- instead, with %s for the value given ("remove it" when absent).  Every
-- other property is the app's to tune, luka's own defaults included.
M.owned = {
  { property = "bootstrap.servers", clients = "broker",
    reason = "luka sets it from --brokers, the brokers option or KAFKA_BROKERS",
    fix = "use brokers = %q instead" },
  { property = "client.id", clients = "broker", reason = "luka sets it from the client_id option",
    fix = "use client_id = %q instead" },
  { property = "log.queue", clients = "all",
    reason = "luka serves librdkafka's log lines on its loop thread" },
  { property = "group.id", clients = "consumer",
    reason = "luka sets it from the endpoint's group option", fix = "use group = %q instead" },
  { property = "enable.auto.offset.store", clients = "consumer",
    reason = "luka stores offsets only when a message is done" },
  { property = "enable.auto.commit", clients = "consumer",
    reason = "luka commits the offsets it stored every auto.commit.interval.ms" },
  { property = "transactional.id", clients = "producer",
    reason = "a producer of luka's with its own transactional.id fails every publish outside a transaction",
    fix = "remove it; for exactly-once consume→publish set transactional = true on the consumer whose handlers publish (README, \"Exactly-once\")" },
  { property = "delivery.report.only.error", clients = "producer",
    reason = "luka commits a message once its publishes are acknowledged, which needs every delivery report" },
}

-- nil if config for clients ("consumer", "producer" or "all") may set
-- property; else "property: why; what to do instead".
function M.owned_property(clients, property, value)
  for _, o in ipairs(M.owned) do
    -- "broker" entries are reached only through clients == "all".
    if o.property == property and (clients == "all" or o.clients == "all" or o.clients == clients) then
      return ("%s: %s; %s"):format(property, o.reason, (o.fix or "remove it"):format(value))
    end
  end
end

-- librdkafka takes every property as a string, so values are converted here
-- once; integral numbers lose their ".0" because librdkafka rejects "5000.0".
-- clients says which of luka's clients the table configures, and so which
-- properties it may not set (see M.owned); nil for topic configs.
local function config(clients)
  return { doc = "a table of librdkafka properties", check = function(v, opt)
    if type(v) ~= "table" then return nil end
    local out, keys = {}, {}
    for k, x in pairs(v) do
      if type(k) ~= "string" then
        return nil, ("option '%s' must map property names to values, got a %s key")
          :format(opt, type(k))
      end
      local t = type(x)
      if t == "number" then
        out[k] = tostring(math.tointeger(x) or x)
      elseif t == "string" or t == "boolean" then
        out[k] = tostring(x)
      else
        return nil, ("option '%s' key '%s' must be a string, number or boolean, got %s")
          :format(opt, k, t)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys) -- the same message whichever order pairs takes
    for _, k in ipairs(keys) do
      local owned = clients and M.owned_property(clients, k, out[k])
      if owned then return nil, ("%s sets %s"):format(opt, owned) end
    end
    return out
  end }
end

local function one_of(...)
  local names = { ... }
  local doc = '"' .. table.concat(names, '" or "') .. '"'
  return { doc = doc, check = function(v, opt)
    for _, name in ipairs(names) do
      if v == name then return v end
    end
    if type(v) == "string" then
      return nil, ("option '%s' must be %s, got '%s'%s"):format(opt, doc, v, suggest(v, names))
    end
  end }
end

local DURATION = { doc = 'a duration such as "250ms", "5s", "2m" or "1h"', check = function(v)
  local ms, err = M.duration(v)
  if ms then return ms end
  return nil, err
end }

local function integer_at_least(min)
  return { doc = ("an integer >= %d"):format(min), check = function(v)
    if math.type(v) == "integer" and v >= min then return v end
  end }
end

local function number_at_least(min)
  return { doc = ("a number >= %s"):format(min), check = function(v)
    if type(v) == "number" and v >= min then return v end
  end }
end

-- Sizes such as "64MB" (binary: MB = 1024 * 1024 bytes) or a number of bytes.
local SIZE_UNIT = { B = 1, KB = 1024, MB = 1024 ^ 2, GB = 1024 ^ 3,
                    KiB = 1024, MiB = 1024 ^ 2, GiB = 1024 ^ 3 }
local SIZE = { doc = 'a size such as "512KB", "64MB" or "1GB"', check = function(v)
  if math.type(v) == "integer" and v > 0 then return v end
  if type(v) ~= "string" then return nil end
  local n, unit = v:match("^(%d+)%s*(%a+)$")
  local scale = SIZE_UNIT[unit or ""]
  if n and scale and tonumber(n) > 0 then return math.tointeger(tonumber(n) * scale) end
  return nil, ("bad size '%s': write it as 512KB, 64MB or 1GB"):format(v)
end }

local BOOLEAN = { doc = "true or false", check = function(v)
  if type(v) == "boolean" then return v end
end }

local TEXT_OR_FUNCTION = { doc = "a topic or publisher name, or a function(msg, meta, err)",
  check = function(v, opt)
    if type(v) == "function" then return v end
    return TEXT.check(v, opt)
  end }

-- url with the password of its userinfo (redis://user:PASSWORD@host)
-- written as ********, for every message that shows a store.  The userinfo
-- ends at the last '@', so a password with an unescaped '@' goes whole.
function M.redact_url(url)
  local scheme = url:find("://", 1, true)
  local at = url:match(".*()@")
  if not scheme or not at or at < scheme then return url end
  local colon = url:find(":", scheme + 3, true)
  if not colon or colon > at then return url end
  return url:sub(1, colon) .. "********" .. url:sub(at)
end

local STORE_DOC = '"memory", "sqlite:PATH" or "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"'
local STORE = { doc = STORE_DOC, check = function(v)
  if v == "memory" then return v end
  if type(v) ~= "string" then return nil end
  if v:match("^sqlite:.+") then return v end
  local rest = v:match("^redis://(.*)$")
  local host = rest and (rest:match("^.*@(.*)$") or rest)
  if host and (host:match("^[^:/@]+:%d+/?%d*$") or host:match("^[^:/@]+/?%d*$")) then return v end
  return nil, ("option 'store' must be %s, got '%s'"):format(STORE_DOC, M.redact_url(v))
end }

-- A PostgreSQL URL, as libpq reads it.
local PG_URL = { doc = 'a URL "postgres://USER:PASSWORD@HOST:PORT/DB"', check = function(v, opt)
  if type(v) ~= "string" then return nil end
  if v:match("^postgres://.") or v:match("^postgresql://.") then return v end
  return nil, ("option '%s' must be a URL \"postgres://USER:PASSWORD@HOST:PORT/DB\", got '%s'")
    :format(opt, M.redact_url(v))
end }

-- A table name as SQL takes it unquoted: name or schema.name.
local SQL_NAME = { doc = "a table name, name or schema.name (letters, digits, _)", check = function(v, opt)
  if type(v) ~= "string" then return nil end
  if v:match("^[%a_][%w_]*$") or v:match("^[%a_][%w_]*%.[%a_][%w_]*$") then return v:lower() end
  return nil, ("option '%s' must be a table name, name or schema.name (letters, digits, _), got '%s'")
    :format(opt, v)
end }

local POSITIVE_DURATION = { doc = 'a duration such as "200ms", "1s" (more than 0)', check = function(v, opt)
  local ms, err = M.duration(v)
  if not ms then return nil, err end
  if ms == 0 then return nil, ("option '%s' must be more than 0"):format(opt) end
  return ms
end }

-- A table option checked against a schema of its own (retry, dedup...);
-- parse is defined below, and called only once the schema is complete.
local parse
local function nested(kind, doc)
  return { doc = doc, check = function(v, opt)
    if type(v) ~= "table" then return nil end
    local out, err = parse(kind, nil, v)
    if not out then return nil, ("option '%s': %s"):format(opt, err) end
    return out
  end }
end

-- The schema --------------------------------------------------------------

-- A default equal to M.NAME means "the declaration's own name"; it prints as
-- such, so help output can show it like any other default.
local NAME = setmetatable({}, { __tostring = function() return "the declaration's name" end })
M.NAME = NAME

local FORMAT = one_of("json", "raw")
local HANDLER = "missing handler: add handle = function(msg, meta) ... end, "
  .. "or handle_batch = function(batch) ... end"
local BOTH_HANDLERS = "both handle and handle_batch are given: keep one (handle_batch takes a "
  .. "batch of messages, handle one message)"
local BATCH_ONLY = "option 'batch' goes with handle_batch: write handle_batch = function(batch) ... end"
local ON_DELIVERY = "function(report) called with the delivery report of each message published "
  .. "outside a handler (timers, loading): { topic, partition, offset, key, id, error }"

-- Every option of every declaration, in the order help should list them.
-- Each entry: name, type = { doc, check }, default (passed through the same
-- check, so table defaults are copied), required (the message shown when the
-- option is missing) and help.  A new option is one entry here; consumers and
-- channels hand every option on to their endpoint record.
M.options = {
  -- Tables inside endpoint options.
  retry = {
    { name = "instant", type = integer_at_least(0), default = 0,
      help = "extra immediate attempts before the message counts as failed" },
    { name = "delayed", type = nested("delayed", "a table { initial, multiplier, max, attempts, jitter }"),
      help = "retries after a backoff, in order, without blocking other partitions" },
  },
  delayed = {
    { name = "initial", type = DURATION, default = "1s", help = "first backoff" },
    { name = "multiplier", type = number_at_least(1), default = 2, help = "backoff growth per retry" },
    { name = "max", type = DURATION, default = "30s", help = "longest backoff" },
    { name = "attempts", type = integer_at_least(1), default = 3, help = "delayed retries before giving up" },
    { name = "jitter", type = BOOLEAN, default = false, help = "randomise each backoff by up to half" },
  },
  batch = {
    { name = "max", type = integer_at_least(1), default = 500,
      help = "most messages in a batch (at most 10000); a batch is cut as soon as it has them" },
    { name = "wait", type = DURATION, default = "50ms",
      help = "longest the first message of a batch waits for more before the batch is cut smaller" },
  },
  transaction = {
    { name = "messages", type = integer_at_least(1), default = 1000,
      help = "messages in a transaction before it commits" },
    { name = "interval", type = DURATION, default = "100ms",
      help = "longest a transaction stays open before it commits" },
    { name = "instance", type = TEXT,
      help = "this process's part of the transactional.id <group>.<consumer>.<instance> (default: the host name)" },
  },
  dedup = {
    { name = "key", type = KEY, help = "payload field, or function(msg, meta), giving the dedup key" },
    { name = "header", type = TEXT, help = "header giving the dedup key (default: the message id header)" },
    { name = "ttl", type = DURATION, default = "24h", help = "how long a handled key is remembered" },
    { name = "store", type = STORE, default = "memory", help = "where handled keys are kept" },
    { name = "max_entries", type = integer_at_least(1), default = 100000,
      help = "memory store: keys kept before the oldest is evicted" },
  },
  redis = {
    { name = "timeout", type = DURATION, default = "5s",
      help = "longest a call waits for its reply, then it returns nil, err (0: only the handler's timeout)" },
    { name = "pool", type = integer_at_least(0), default = 8,
      help = "idle connections kept for the next calls" },
  },
  pg = {
    { name = "timeout", type = DURATION, default = "10s",
      help = "longest a call waits for a connection and its result, then it returns nil, err (0: only the handler's timeout)" },
    { name = "pool", type = integer_at_least(1), default = 4,
      help = "most connections open at once; a call that finds none free waits for one" },
  },
  runtime = {
    { name = "memory_limit", type = SIZE,
      help = "most memory the app's Lua state may hold; beyond it a handler gets a memory error" },
    { name = "timeout", type = DURATION, default = "30s",
      help = "longest a timer callback, or a key function of a publish made while loading, may run" },
  },
  topic = {
    { name = "partitions", type = integer_at_least(1),
      help = "partition count (default: the cluster's num.partitions)" },
    { name = "replication", type = integer_at_least(1),
      help = "replication factor (default: the cluster's default.replication.factor)" },
    { name = "config", type = config(nil), default = {}, help = "topic configs, such as retention.ms" },
  },
  broker = {
    { name = "brokers", type = TEXT, help = "bootstrap servers, host:port[,host:port...]" },
    { name = "client_id", type = TEXT, help = "client.id the brokers see for this app" },
    { name = "config", type = config("all"), default = {}, help = "librdkafka properties for every client" },
  },
  publisher = {
    { name = "topic", type = TEXT, default = NAME, help = "topic the messages are produced to" },
    { name = "key", type = KEY, help = "message key: a payload field name, or function(payload) returning it" },
    { name = "config", type = config("producer"), default = {}, help = "librdkafka producer properties" },
    { name = "on_delivery", type = FUNCTION, help = ON_DELIVERY },
  },
  consumer = {
    { name = "topics", type = TOPICS, required = "missing topics: add topics = { \"topic\" }",
      help = "topics to subscribe to" },
    { name = "group", type = TEXT, default = NAME, help = "consumer group id" },
    { name = "format", type = FORMAT, default = "json",
      help = "json decodes each payload into a table; raw passes it on as a string" },
    { name = "config", type = config("consumer"), default = {}, help = "librdkafka consumer properties" },
    { name = "handle", type = FUNCTION, help = "function(msg, meta) called for each message" },
    { name = "handle_batch", type = FUNCTION,
      help = "function(batch) called with up to batch.max messages of one partition, instead of handle" },
    { name = "batch", type = nested("batch", "a table { max = N, wait = duration }"),
      help = "with handle_batch: how a batch is cut (default { max = 500, wait = \"50ms\" })" },
    { name = "transactional", type = BOOLEAN, default = false,
      help = "exactly-once: what the handlers publish and the offsets commit in one Kafka transaction" },
    { name = "transaction", type = nested("transaction", "a table { messages, interval, instance }"),
      help = "when a transactional consumer commits, and its transactional.id" },
  },
  channel = {
    { name = "topic", type = TEXT, default = NAME, help = "topic the channel publishes to and consumes from" },
    { name = "group", type = TEXT, default = NAME, help = "consumer group id" },
    { name = "format", type = FORMAT, default = "json",
      help = "json decodes each payload into a table; raw passes it on as a string" },
    { name = "key", type = KEY, help = "message key: a payload field name, or function(payload) returning it" },
    { name = "config", type = config("consumer"), default = {}, help = "librdkafka consumer properties" },
    { name = "handle", type = FUNCTION, help = "function(msg, meta) called for each message" },
    { name = "handle_batch", type = FUNCTION,
      help = "function(batch) called with up to batch.max messages of one partition, instead of handle" },
    { name = "batch", type = nested("batch", "a table { max = N, wait = duration }"),
      help = "with handle_batch: how a batch is cut (default { max = 500, wait = \"50ms\" })" },
    { name = "on_delivery", type = FUNCTION, help = ON_DELIVERY },
  },
  -- The transactional outbox's relay (README, "The transactional outbox").
  outbox = {
    { name = "db", type = PG_URL,
      required = 'missing db: add db = "postgres://USER:PASSWORD@HOST:PORT/DB"',
      help = "the PostgreSQL database that holds the outbox table" },
    { name = "table", type = SQL_NAME, default = "outbox", help = "the outbox table" },
    { name = "publisher", type = TEXT,
      required = 'missing publisher: add publisher = "name" (a luka.publisher or luka.channel)',
      help = "the publisher that sends the rows; a row without a topic goes to its topic" },
    { name = "batch", type = integer_at_least(1), default = 500,
      help = "rows read, published and marked sent per round" },
    { name = "poll", type = POSITIVE_DURATION, default = "200ms",
      help = "how often the relay looks for unsent rows" },
  },
}

-- What to do when a handler fails, shared by consumers and channels.
local POLICY = {
  { name = "retry", type = nested("retry", "a table { instant = N, delayed = { ... } }"),
    help = "retry a failed message at once and/or after a backoff" },
  { name = "error_channel", type = TEXT_OR_FUNCTION,
    help = "where a message goes once retries are exhausted: topic, publisher, or function(msg, meta, err)" },
  { name = "final_failure", type = one_of("stop", "resend", "release", "ignore"), default = "stop",
    help = "what happens when retries are exhausted and no error channel took the message" },
  { name = "dedup", type = nested("dedup", "a table { key | header, ttl, store, max_entries }"),
    help = "skip messages whose key was already handled within the ttl" },
  { name = "timeout", type = DURATION, default = "30s",
    help = "longest a handler may run, waiting on I/O included" },
  { name = "concurrency", type = integer_at_least(1), default = 1,
    help = "handler calls in flight at once; each runs in its own coroutine" },
  { name = "ordering", type = one_of("key", "partition", "none"),
    help = 'what runs one at a time under concurrency: "key" (the default), "partition" or "none"' },
  { name = "buffer", type = integer_at_least(1), default = 10000,
    help = "messages held behind busy keys or partitions before luka takes no more" },
  -- Lifecycle hooks (README, "Lifecycle hooks").
  { name = "on_assign", type = FUNCTION,
    help = "function(partitions) called once partitions are assigned: a sequence of { topic, partition }" },
  { name = "on_revoke", type = FUNCTION,
    help = "function(partitions) called before partitions go back to the group, their handlers done and offsets committed" },
  { name = "on_stop", type = FUNCTION,
    help = "function() called when the endpoint stops (shutdown, final failure), before it leaves its group" },
}
for _, kind in ipairs({ "consumer", "channel" }) do
  for _, opt in ipairs(POLICY) do table.insert(M.options[kind], opt) end
end

-- Checks opts against the schema of kind and returns them with defaults
-- applied, or nil and a message.  Unknown options are reported first, since a
-- misspelt "handler" would otherwise surface as a confusing "missing handler".
function parse(kind, name, opts)
  local schema, known, is_known = M.options[kind], {}, {}
  for i, opt in ipairs(schema) do known[i], is_known[opt.name] = opt.name, true end
  local unknown = {}
  for k, v in pairs(opts) do
    if type(k) ~= "string" then
      return nil, ("options are written name = value, got a bare %s"):format(type(v))
    end
    if not is_known[k] then unknown[#unknown + 1] = k end
  end
  if unknown[1] then
    table.sort(unknown)
    return nil, ("unknown option '%s'%s"):format(unknown[1], suggest(unknown[1], known))
  end
  local out = {}
  for _, opt in ipairs(schema) do
    local v = opts[opt.name]
    if v == nil then
      if opt.required then return nil, opt.required end
      v = opt.default
      if v == NAME then v = name end
    end
    if v ~= nil then
      local value, msg = opt.type.check(v, opt.name)
      if value == nil then
        return nil, msg or ("option '%s' must be %s, got %s"):format(opt.name, opt.type.doc, type(v))
      end
      out[opt.name] = value
    end
  end
  if kind == "consumer" or kind == "channel" then
    if out.handle and out.handle_batch then return nil, BOTH_HANDLERS end
    if not out.handle and not out.handle_batch then return nil, HANDLER end
    if out.batch and not out.handle_batch then return nil, BATCH_ONLY end
    if out.handle_batch and out.ordering and out.ordering ~= "partition" then
      return nil, ("ordering = %q does not go with handle_batch: a batch holds its partition, "
        .. "so batches run one at a time per partition; remove ordering"):format(out.ordering)
    end
    if out.handle_batch and not out.batch then out.batch = assert(parse("batch", nil, {})) end
    if out.batch and out.batch.max > M.BATCH_MAX then
      return nil, ("option 'batch': max = %d is more than an endpoint holds in flight (%d); "
        .. "use at most %d"):format(out.batch.max, M.BATCH_MAX, M.BATCH_MAX)
    end
  end
  return out
end

-- opts of a call such as luka.redis(url, opts) checked against the schema
-- of kind, with defaults applied; nil and a message when they do not fit.
function M.call_options(kind, opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then return nil, ("options must be a table, got %s"):format(type(opts)) end
  return parse(kind, nil, opts)
end

-- State -------------------------------------------------------------------

local state

-- Clears every declaration.  targets holds publisher and channel names (what
-- luka.publish may name), endpoint_names consumer and channel names; pending
-- holds names whose options table never came (`luka.consumer "x"` alone).
function M.reset()
  state = { broker = { config = {} }, runtime = {}, publishers = {}, endpoints = {}, topics = {},
            outboxes = {}, targets = {}, endpoint_names = {}, topic_names = {}, outbox_names = {},
            pending = {} }
end
M.reset()

-- "file:line" of the function `level` levels above the caller: the app script.
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  return info.short_src .. ":" .. info.currentline
end

-- Makes luka.<kind>: a function taking the name and returning the function
-- that takes the options, so scripts read luka.consumer "name" { ... }.
-- Errors are raised at level 2, the user's call, after all checks pass in
-- helpers that return messages instead of raising.
local function declaration(kind, namespaces, register)
  return function(name)
    if type(name) ~= "string" or name == "" then
      error(("luka.%s expects a name: luka.%s \"name\" { ... }"):format(kind, kind), 2)
    end
    local label = ("%s '%s'"):format(kind, name)
    local function options(opts)
      state.pending[options] = nil
      local at = where(2)
      if type(opts) ~= "table" then
        error(("%s: expects an options table: luka.%s \"%s\" { ... }, got %s")
          :format(label, kind, name, type(opts)), 2)
      end
      local o, err = parse(kind, name, opts)
      if not o then error(label .. ": " .. err, 2) end
      if kind == "consumer" then
        err = M.check_transactional(o)
        if err then error(label .. ": " .. err, 2) end
      end
      for _, ns in ipairs(namespaces) do
        local prev = state[ns][name]
        if prev then
          error(("%s: name already used by %s '%s' at %s"):format(label, prev.kind, name, prev.where), 2)
        end
      end
      for _, ns in ipairs(namespaces) do state[ns][name] = { kind = kind, where = at } end
      register(name, o, at)
    end
    state.pending[options] = ("%s: %s has no options: write luka.%s \"%s\" { ... }")
      :format(where(2), label, kind, name)
    return options
  end
end

-- nil, or why a consumer's options do not fit transactional = true.
function M.check_transactional(o)
  if not o.transactional then
    if o.transaction then return "transaction = { ... } needs transactional = true" end
    return nil
  end
  if o.handle_batch then
    return "handle_batch cannot be combined with transactional = true yet: use handle (each "
      .. "transaction already gathers up to transaction.messages messages)"
  end
  if o.dedup then
    return "dedup cannot be combined with transactional = true: its store is outside the "
      .. "transaction, so a message of an aborted transaction would be skipped when it comes "
      .. "again; remove dedup (a transactional consumer publishes each output once)"
  end
  for _, p in ipairs({ "isolation.level", "enable.auto.commit" }) do
    if o.config[p] then
      return ("config sets %s: luka sets it on a transactional consumer (read_committed, "
        .. "offsets committed in the transactions); remove it"):format(p)
    end
  end
  if not o.transaction then o.transaction = assert(parse("transaction", nil, {})) end
end

-- Declarations ------------------------------------------------------------

function M.broker(opts)
  if state.broker.where then
    error(("broker: already declared at %s; declare it once"):format(state.broker.where), 2)
  end
  if type(opts) ~= "table" then
    error(("broker: expects an options table: luka.broker { ... }, got %s"):format(type(opts)), 2)
  end
  local o, err = parse("broker", nil, opts)
  if not o then error("broker: " .. err, 2) end
  o.where = where(2)
  state.broker = o
end

-- Limits of the app as a whole; declared at most once.
function M.runtime(opts)
  if state.runtime.where then
    error(("runtime: already declared at %s; declare it once"):format(state.runtime.where), 2)
  end
  if type(opts) ~= "table" then
    error(("runtime: expects an options table: luka.runtime { ... }, got %s"):format(type(opts)), 2)
  end
  local o, err = parse("runtime", nil, opts)
  if not o then error("runtime: " .. err, 2) end
  o.where = where(2)
  state.runtime = o
end

M.publisher = declaration("publisher", { "targets" }, function(name, o, at)
  o.name, o.where, o.channel = name, at, false
  table.insert(state.publishers, o)
end)

M.consumer = declaration("consumer", { "endpoint_names" }, function(name, o, at)
  o.name, o.kind, o.where = name, "consumer", at
  table.insert(state.endpoints, o)
end)

-- A channel is a publisher and a consumer on one topic.  Its config is the
-- consumer's; the publisher side gets the broker-wide config only.
M.channel = declaration("channel", { "targets", "endpoint_names" }, function(name, o, at)
  table.insert(state.publishers, { name = name, topic = o.topic, key = o.key, config = {}, where = at,
    channel = true, on_delivery = o.on_delivery })
  o.topics, o.topic, o.key, o.on_delivery = { o.topic }, nil, nil, nil
  o.name, o.kind, o.where = name, "channel", at
  table.insert(state.endpoints, o)
end)

-- A topic the app expects to exist, which `luka topics --apply` creates and
-- the embedded broker creates at start-up.
M.topic = declaration("topic", { "topic_names" }, function(name, o, at)
  o.name, o.where = name, at
  table.insert(state.topics, o)
end)

-- A relay that publishes the rows an app's transactions write to a table
-- (lua/luka/outbox.lua runs it).  Its publisher is checked once the whole
-- script has run, since it may be declared after the outbox.
M.outbox = declaration("outbox", { "outbox_names" }, function(name, o, at)
  o.name, o.where = name, at
  table.insert(state.outboxes, o)
end)

-- Queries -----------------------------------------------------------------

-- The declared topology, in declaration order.  A name declared without its
-- options table is an error here, since nothing else would ever notice it.
function M.registry()
  local _, unfinished = next(state.pending)
  if unfinished then error(unfinished, 0) end
  -- An app that never declared luka.runtime gets its defaults too.
  local runtime = state.runtime.where and state.runtime or assert(parse("runtime", nil, {}))
  for _, o in ipairs(state.outboxes) do
    local ok, why = M.check_target(o.publisher)
    if not ok then
      error(("%s: outbox '%s': %s"):format(o.where, o.name, why:gsub("^unknown publish target", "unknown publisher")), 0)
    end
  end
  return { broker = state.broker, runtime = runtime, publishers = state.publishers,
           endpoints = state.endpoints, topics = state.topics, outboxes = state.outboxes }
end

-- true if name is a declared publisher or channel, else false and a message
-- suggesting the nearest declared name.
function M.check_target(name)
  if type(name) ~= "string" then
    return false, ("publish target must be a publisher or channel name, got %s"):format(type(name))
  end
  if state.targets[name] then return true end
  local names = {}
  for _, p in ipairs(state.publishers) do names[#names + 1] = p.name end
  if #names == 0 then
    return false, ("unknown publish target '%s': no publishers or channels are declared"):format(name)
  end
  return false, ("unknown publish target '%s'%s; declared: %s")
    :format(name, suggest(name, names), table.concat(names, ", "))
end

-- The option reference, as Markdown, from the same schema that validates:
-- `luka options` prints it and the README carries it.
function M.reference()
  local out = {}
  local kinds = { { "broker", "luka.broker { ... }" }, { "runtime", "luka.runtime { ... }" },
    { "publisher", 'luka.publisher "name" { ... }' }, { "consumer", 'luka.consumer "name" { ... }' },
    { "channel", 'luka.channel "name" { ... }' }, { "topic", 'luka.topic "name" { ... }' },
    { "retry", "retry = { ... }" }, { "delayed", "retry = { delayed = { ... } }" },
    { "dedup", "dedup = { ... }" }, { "batch", "batch = { ... }" }, { "transaction", "transaction = { ... }" },
    { "redis", "luka.redis(url, { ... })" }, { "pg", "luka.pg(url, { ... })" }, { "outbox", 'luka.outbox "name" { ... }' } }
  for _, k in ipairs(kinds) do
    out[#out + 1] = ("#### `%s`\n\n| option | type | default | meaning |\n| --- | --- | --- | --- |"):format(k[2])
    for _, opt in ipairs(M.options[k[1]]) do
      local default = opt.required and "required" or opt.default == nil and "" or
        opt.default == NAME and "its name" or
        type(opt.default) == "table" and (next(opt.default) and "" or "{}") or tostring(opt.default)
      if type(opt.default) == "string" and opt.default ~= "" then default = '"' .. default .. '"' end
      out[#out + 1] = ("| `%s` | %s | %s | %s |"):format(opt.name, opt.type.doc:gsub("|", "\\|"),
        default, opt.help)
    end
    out[#out + 1] = ""
  end
  out[#out + 1] = "#### librdkafka properties luka sets itself\n\n" ..
    "A `config` table or a `LUKA_KAFKA_*` variable that sets one of these is refused.\n\n" ..
    "| property | on | why | instead |\n| --- | --- | --- | --- |"
  local on = { all = "every client", broker = "`luka.broker` and `LUKA_KAFKA_*`",
    consumer = "consumers", producer = "producers" }
  for _, o in ipairs(M.owned) do
    out[#out + 1] = ("| `%s` | %s | %s | %s |"):format(o.property, on[o.clients], o.reason,
      (o.fix or "remove it"):format("..."):gsub('([%w_]+ = "%.%.%.")', "`%1`"))
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

-- Durations ---------------------------------------------------------------

local UNIT_MS = { ms = 1, s = 1000, m = 60 * 1000, h = 60 * 60 * 1000 }

-- Milliseconds for "250ms", "5s", "2m", "1h" or an integer number of
-- milliseconds; nil and a message for anything else (negative, fractional,
-- unknown unit or too large to fit an integer).
function M.duration(s)
  local ms
  if type(s) == "number" then
    ms = math.tointeger(s)
  elseif type(s) == "string" then
    local digits, unit = s:match("^(%d+)(%a+)$")
    local n, scale = math.tointeger(tonumber(digits or "")), UNIT_MS[unit]
    if n and scale and n <= math.maxinteger // scale then ms = n * scale end
  end
  if ms and ms >= 0 then return ms end
  return nil, ("bad duration '%s': write it as 250ms, 5s, 2m or 1h"):format(tostring(s))
end

return M
