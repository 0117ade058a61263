-- Specs for luka.dsl: app snippets are loaded from strings named "=app.lua",
-- so the errors they raise read exactly as a user would see them.

local dsl = require "luka.dsl"

-- The luka table the C host builds: the four declarations copied over.
local luka = { broker = dsl.broker, publisher = dsl.publisher,
               consumer = dsl.consumer, channel = dsl.channel,
               topic = dsl.topic, runtime = dsl.runtime }

-- Runs src as app.lua in a fresh registry and returns the registry.
local function app(src)
  dsl.reset()
  local env = setmetatable({ luka = luka }, { __index = _G })
  assert(load(src, "=app.lua", "t", env))()
  return dsl.registry()
end

-- The error message app(src) raises.
local function app_error(src)
  local ok, err = pcall(app, src)
  assert.is_false(ok, "expected an error")
  return err
end

local function noop() end

describe("luka.dsl", function()
  describe("valid declarations", function()
    it("applies consumer defaults: group is the name, format json, empty config", function()
      local r = app [[
luka.consumer "orderConsumers" { topics = { "orders", "returns" }, handle = function() end }
]]
      assert.equal(1, #r.endpoints)
      local e = r.endpoints[1]
      assert.equal("orderConsumers", e.name)
      assert.equal("consumer", e.kind)
      assert.same({ "orders", "returns" }, e.topics)
      assert.equal("orderConsumers", e.group)
      assert.equal("json", e.format)
      assert.same({}, e.config)
      assert.is_function(e.handle)
      assert.equal("app.lua:1", e.where)
      assert.same({}, r.publishers)
    end)

    it("applies publisher defaults: topic is the name, no key, empty config, not a channel", function()
      local r = app [[
luka.publisher "orders" {}
]]
      assert.same({ { name = "orders", topic = "orders", config = {}, where = "app.lua:1", channel = false } },
                  r.publishers)
    end)

    it("keeps explicit consumer options", function()
      local r = app [[
luka.consumer "c" { topics = { "t" }, group = "g", format = "raw", handle = function() end }
]]
      assert.equal("g", r.endpoints[1].group)
      assert.equal("raw", r.endpoints[1].format)
    end)

    it("accepts a key that is a field name or a function", function()
      local r = app [[
luka.publisher "a" { key = "orderId" }
luka.publisher "b" { topic = "orders", key = function(p) return p.id end }
]]
      assert.equal("orderId", r.publishers[1].key)
      assert.is_function(r.publishers[2].key)
      assert.equal("orders", r.publishers[2].topic)
    end)

    it("converts config values to strings, integers without .0", function()
      local r = app [[
luka.publisher "orders" { config = { acks = "all", ["linger.ms"] = 5, ["batch.size"] = 1000.0,
                                     ratio = 0.5, ["enable.idempotence"] = true, x = false } }
]]
      assert.same({ acks = "all", ["linger.ms"] = "5", ["batch.size"] = "1000", ratio = "0.5",
                    ["enable.idempotence"] = "true", x = "false" }, r.publishers[1].config)
    end)

    it("adds a publisher entry and an endpoint entry for a channel", function()
      local r = app [[
luka.channel "notifications" { key = "userId", config = { ["auto.offset.reset"] = "earliest" },
                               handle = function() end }
]]
      assert.same({ { name = "notifications", topic = "notifications", key = "userId", config = {},
                      where = "app.lua:1", channel = true } }, r.publishers)
      local e = r.endpoints[1]
      assert.equal("notifications", e.name)
      assert.equal("channel", e.kind)
      assert.same({ "notifications" }, e.topics)
      assert.equal("notifications", e.group)
      assert.equal("json", e.format)
      assert.same({ ["auto.offset.reset"] = "earliest" }, e.config)
      assert.is_nil(e.topic)
      assert.is_nil(e.key)
      assert.equal("app.lua:1", e.where)
    end)

    it("uses the channel's topic and group when given", function()
      local r = app [[
luka.channel "notifications" { topic = "crm_notifications", group = "crm", handle = function() end }
]]
      assert.equal("crm_notifications", r.publishers[1].topic)
      assert.same({ "crm_notifications" }, r.endpoints[1].topics)
      assert.equal("crm", r.endpoints[1].group)
    end)

    it("records the broker with its location and stringified config", function()
      local r = app [[
local luka = luka
luka.broker { brokers = "localhost:9092", client_id = "crm",
              config = { ["statistics.interval.ms"] = 5000 } }
]]
      assert.same({ brokers = "localhost:9092", client_id = "crm",
                    config = { ["statistics.interval.ms"] = "5000" }, where = "app.lua:2" }, r.broker)
    end)

    it("gives an empty broker record when no broker is declared", function()
      local r = app ""
      assert.same({ broker = { config = {} }, runtime = { timeout = 30000 }, publishers = {},
                    endpoints = {}, topics = {}, outboxes = {} }, r)
    end)

    it("keeps declaration order for publishers and endpoints", function()
      local r = app [[
luka.consumer "c1" { topics = { "a" }, handle = function() end }
luka.publisher "p1" {}
luka.channel "ch" { handle = function() end }
luka.publisher "p2" {}
luka.consumer "c2" { topics = { "b" }, handle = function() end }
]]
      local function names(list)
        local out = {}
        for i, x in ipairs(list) do out[i] = x.name end
        return out
      end
      assert.same({ "p1", "ch", "p2" }, names(r.publishers))
      assert.same({ "c1", "ch", "c2" }, names(r.endpoints))
    end)

    it("locates a multi-line declaration at the line where it starts", function()
      local r = app [[

luka.consumer "orders" {
  topics = { "orders" },
  handle = function() end,
}
]]
      assert.equal("app.lua:2", r.endpoints[1].where)
    end)

    it("allows a publisher and a consumer to share a name", function()
      local r = app [[
luka.publisher "orders" {}
luka.consumer "orders" { topics = { "orders" }, handle = function() end }
]]
      assert.equal(1, #r.publishers)
      assert.equal(1, #r.endpoints)
    end)

    it("accepts the example app script", function()
      local r = app [[
luka.broker { brokers = os.getenv("KAFKA_BROKERS_UNSET_IN_SPEC") or "localhost:9092",
              client_id = "crm", config = { ["statistics.interval.ms"] = 5000 } }
luka.publisher "orders" { topic = "orders", key = "orderId", config = { acks = "all" } }
luka.consumer "orderConsumers" {
  topics = { "orders" }, group = "order_subscriber", format = "json",
  config = { ["auto.offset.reset"] = "earliest" },
  handle = function(order, meta) end,
}
luka.channel "notifications" { topic = "crm_notifications", group = "crm", handle = function() end }
]]
      assert.equal("localhost:9092", r.broker.brokers)
      assert.equal(2, #r.publishers)
      assert.equal(2, #r.endpoints)
      assert.equal("order_subscriber", r.endpoints[1].group)
      assert.equal("app.lua:4", r.endpoints[1].where)
      assert.equal("app.lua:9", r.endpoints[2].where)
    end)

    it("starts empty again after reset", function()
      app [[luka.publisher "orders" {}]]
      dsl.reset()
      assert.same({ broker = { config = {} }, runtime = { timeout = 30000 }, publishers = {},
                    endpoints = {}, topics = {}, outboxes = {} }, dsl.registry())
    end)

    it("does not share default config tables between records", function()
      local r = app [[
luka.publisher "a" {}
luka.publisher "b" {}
]]
      assert.are_not.equal(r.publishers[1].config, r.publishers[2].config)
    end)
  end)

  describe("errors", function()
    it("suggests the nearest option for an unknown option", function()
      assert.equal("app.lua:1: consumer 'orders': unknown option 'topic' (did you mean 'topics'?)",
        app_error [[luka.consumer "orders" { topic = "orders", handle = function() end }]])
    end)

    it("reports a misspelt handler as unknown rather than missing", function()
      assert.equal("app.lua:1: consumer 'orders': unknown option 'handler' (did you mean 'handle'?)",
        app_error [[luka.consumer "orders" { topics = { "orders" }, handler = function() end }]])
    end)

    it("omits the suggestion when no option is close", function()
      assert.equal("app.lua:1: publisher 'orders': unknown option 'compression'",
        app_error [[luka.publisher "orders" { compression = "lz4" }]])
    end)

    it("rejects topics that are not a list", function()
      assert.equal("app.lua:2: consumer 'orders': option 'topics' must be a list of topic names, got string",
        app_error [[
luka.publisher "p" {}
luka.consumer "orders" { topics = "orders", handle = function() end }
]])
      assert.equal("app.lua:1: consumer 'orders': option 'topics' must be a list of topic names, got table",
        app_error [[luka.consumer "orders" { topics = { name = "orders" }, handle = function() end }]])
    end)

    it("rejects an empty topics list", function()
      assert.equal("app.lua:1: consumer 'orders': 'topics' is empty: list at least one topic",
        app_error [[luka.consumer "orders" { topics = {}, handle = function() end }]])
    end)

    it("rejects a topic that is not a non-empty string", function()
      assert.equal("app.lua:1: consumer 'orders': option 'topics' item 2 must be a topic name, got number",
        app_error [[luka.consumer "orders" { topics = { "a", 7 }, handle = function() end }]])
      assert.equal("app.lua:1: consumer 'orders': option 'topics' item 1 must be a topic name, got an empty string",
        app_error [[luka.consumer "orders" { topics = { "" }, handle = function() end }]])
    end)

    it("requires topics on a consumer", function()
      assert.equal('app.lua:1: consumer \'orders\': missing topics: add topics = { "topic" }',
        app_error [[luka.consumer "orders" { handle = function() end }]])
    end)

    it("requires a handler on consumers and channels", function()
      assert.equal("app.lua:1: consumer 'orders': missing handler: add handle = function(msg, meta) ... end, or handle_batch = function(batch) ... end",
        app_error [[luka.consumer "orders" { topics = { "orders" } }]])
      assert.equal("app.lua:1: channel 'orders': missing handler: add handle = function(msg, meta) ... end, or handle_batch = function(batch) ... end",
        app_error [[luka.channel "orders" {}]])
    end)

    it("rejects a handler that is not a function", function()
      assert.equal("app.lua:1: consumer 'orders': option 'handle' must be a function, got string",
        app_error [[luka.consumer "orders" { topics = { "orders" }, handle = "notify" }]])
    end)

    it("rejects an unknown format and suggests the nearest", function()
      assert.equal([[app.lua:1: consumer 'c': option 'format' must be "json" or "raw", got 'jsno' (did you mean 'json'?)]],
        app_error [[luka.consumer "c" { topics = { "t" }, format = "jsno", handle = function() end }]])
      assert.equal([[app.lua:1: consumer 'c': option 'format' must be "json" or "raw", got number]],
        app_error [[luka.consumer "c" { topics = { "t" }, format = 1, handle = function() end }]])
    end)

    it("rejects a non-string option value with its expected type", function()
      assert.equal("app.lua:1: publisher 'orders': option 'topic' must be a non-empty string, got number",
        app_error [[luka.publisher "orders" { topic = 42 }]])
      assert.equal("app.lua:1: publisher 'orders': option 'topic' is empty",
        app_error [[luka.publisher "orders" { topic = "" }]])
      assert.equal("app.lua:1: publisher 'orders': option 'key' must be a payload field name or a function(payload) returning the key, got table",
        app_error [[luka.publisher "orders" { key = {} }]])
    end)

    it("names the config key whose value has the wrong type", function()
      assert.equal("app.lua:1: publisher 'orders': option 'config' key 'acks' must be a string, number or boolean, got table",
        app_error [[luka.publisher "orders" { config = { acks = { "all" } } }]])
      assert.equal("app.lua:1: broker: option 'config' key 'debug' must be a string, number or boolean, got function",
        app_error [[luka.broker { config = { debug = print } }]])
    end)

    it("rejects config entries without a property name", function()
      assert.equal("app.lua:1: publisher 'orders': option 'config' must map property names to values, got a number key",
        app_error [[luka.publisher "orders" { config = { "acks=all" } }]])
      assert.equal("app.lua:1: publisher 'orders': option 'config' must be a table of librdkafka properties, got string",
        app_error [[luka.publisher "orders" { config = "acks=all" }]])
    end)

    it("rejects a value written without an option name", function()
      assert.equal("app.lua:1: publisher 'orders': options are written name = value, got a bare string",
        app_error [[luka.publisher "orders" { "orders" }]])
    end)

    it("names the earlier declaration when a channel reuses a publisher name", function()
      assert.equal("app.lua:9: channel 'orders': name already used by publisher 'orders' at app.lua:3",
        app_error [[
local luka = luka

luka.publisher "orders" {}

luka.consumer "c" {
  topics = { "orders" }, handle = function() end,
}

luka.channel "orders" { handle = function() end }
]])
    end)

    it("names the earlier declaration when an endpoint name is reused", function()
      assert.equal("app.lua:2: channel 'c': name already used by consumer 'c' at app.lua:1",
        app_error [[
luka.consumer "c" { topics = { "t" }, handle = function() end }
luka.channel "c" { handle = function() end }
]])
      assert.equal("app.lua:2: consumer 'c': name already used by consumer 'c' at app.lua:1",
        app_error [[
luka.consumer "c" { topics = { "t" }, handle = function() end }
luka.consumer "c" { topics = { "u" }, handle = function() end }
]])
      assert.equal("app.lua:2: publisher 'ch': name already used by channel 'ch' at app.lua:1",
        app_error [[
luka.channel "ch" { handle = function() end }
luka.publisher "ch" {}
]])
    end)

    it("explains the curried form when a declaration gets no name", function()
      assert.equal('app.lua:2: luka.consumer expects a name: luka.consumer "name" { ... }',
        app_error [[
local luka = luka
luka.consumer { topics = { "orders" }, handle = function() end }
]])
      assert.equal('app.lua:1: luka.publisher expects a name: luka.publisher "name" { ... }',
        app_error [[luka.publisher "" {}]])
      assert.equal('app.lua:1: luka.channel expects a name: luka.channel "name" { ... }',
        app_error [[luka:channel "x" {}]])
    end)

    it("explains the options table when it is missing", function()
      assert.equal('app.lua:1: consumer \'orders\': expects an options table: luka.consumer "orders" { ... }, got string',
        app_error [[luka.consumer "orders" "orders"]])
      assert.equal("app.lua:1: broker: expects an options table: luka.broker { ... }, got string",
        app_error [[luka.broker "localhost:9092"]])
    end)

    it("reports a name declared without options when the registry is read", function()
      assert.equal('app.lua:2: publisher \'orders\' has no options: write luka.publisher "orders" { ... }',
        app_error [[
luka.publisher "a" {}
luka.publisher "orders"
]])
    end)

    it("rejects a second broker, naming the first", function()
      assert.equal("app.lua:3: broker: already declared at app.lua:1; declare it once",
        app_error [[
luka.broker { brokers = "a:9092" }

luka.broker { brokers = "b:9092" }
]])
    end)

    it("registers nothing from a declaration that fails", function()
      pcall(app, [[
luka.publisher "ok" {}
luka.channel "bad" { format = "xml", handle = function() end }
]])
      local r = dsl.registry()
      assert.equal(1, #r.publishers)
      assert.equal(0, #r.endpoints)
      assert.is_false(dsl.check_target("bad"))
    end)
  end)

  describe("options schema", function()
    it("lists every option with a type, help and its defaults", function()
      for _, kind in ipairs { "broker", "publisher", "consumer", "channel" } do
        assert.is_table(dsl.options[kind], kind)
        for _, opt in ipairs(dsl.options[kind]) do
          assert.is_string(opt.name)
          assert.is_string(opt.type.doc)
          assert.is_function(opt.type.check)
          assert.is_string(opt.help)
        end
      end
      local names = {}
      for i, opt in ipairs(dsl.options.consumer) do names[i] = opt.name end
      assert.same({ "topics", "group", "format", "config", "handle", "handle_batch", "batch",
                    "transactional", "transaction", "retry", "error_channel", "final_failure", "dedup", "timeout",
                    "concurrency", "ordering", "buffer", "on_assign", "on_revoke", "on_stop" }, names)
    end)

    it("lists the librdkafka properties luka sets itself in the reference it generates", function()
      local ref = dsl.reference()
      assert.is_true(#dsl.owned >= 5)
      for _, o in ipairs(dsl.owned) do
        assert.truthy(ref:find("| `" .. o.property .. "` |", 1, true), o.property)
        assert.truthy(ref:find(o.reason, 1, true), o.reason)
      end
    end)

    it("refuses a config table that sets a property luka sets itself, one table deciding", function()
      assert.equal([[app.lua:1: consumer 'c': config sets group.id: luka sets it from the endpoint's group option; use group = "g" instead]],
        app_error [[luka.consumer "c" { topics = { "t" }, config = { ["group.id"] = "g" }, handle = function() end }]])
      assert.equal("app.lua:1: publisher 'p': config sets transactional.id: a producer of luka's with its own transactional.id fails every publish outside a transaction; remove it; for exactly-once consume→publish set transactional = true on the consumer whose handlers publish (README, \"Exactly-once\")",
        app_error [[luka.publisher "p" { config = { ["transactional.id"] = "x" } }]])
      -- A consumer property is the producer's to ignore, and a topic config is no client's.
      assert.same({ ["group.id"] = "g" }, app([[luka.publisher "p" { config = { ["group.id"] = "g" } }]]).publishers[1].config)
      assert.same({ ["group.id"] = "g" }, app([[luka.topic "t" { config = { ["group.id"] = "g" } }]]).topics[1].config)
      assert.is_nil(dsl.owned_property("consumer", "auto.commit.interval.ms", "5000"))
      assert.truthy(dsl.owned_property("all", "enable.auto.offset.store", "true"))
    end)

    it("shows name-derived defaults as the declaration's name", function()
      assert.equal(dsl.NAME, dsl.options.publisher[1].default)
      assert.equal("the declaration's name", tostring(dsl.options.publisher[1].default))
    end)

    it("drives validation, so a new entry becomes a valid option", function()
      table.insert(dsl.options.publisher, { name = "timeout", help = "test option",
        type = { doc = "a duration", check = function(v) return dsl.duration(v) end } })
      local ok, r = pcall(app, [[luka.publisher "p" { timeout = "5s" }]])
      table.remove(dsl.options.publisher)
      assert.is_true(ok, r)
      assert.equal(5000, r.publishers[1].timeout)
    end)
  end)

  describe("duration", function()
    it("converts ms, s, m and h to milliseconds", function()
      assert.equal(250, dsl.duration("250ms"))
      assert.equal(5000, dsl.duration("5s"))
      assert.equal(120000, dsl.duration("2m"))
      assert.equal(3600000, dsl.duration("1h"))
      assert.equal(0, dsl.duration("0s"))
      assert.equal("integer", math.type(dsl.duration("5s")))
    end)

    it("accepts an integer number of milliseconds", function()
      assert.equal(1500, dsl.duration(1500))
      assert.equal(1500, dsl.duration(1500.0))
      assert.equal("integer", math.type(dsl.duration(1500.0)))
    end)

    it("rejects anything else with a message showing the accepted forms", function()
      for _, bad in ipairs { "5", "5 s", "1.5s", "5d", "-5s", "ms", "", " 5s", "99999999999999999999h" } do
        local ms, err = dsl.duration(bad)
        assert.is_nil(ms, bad)
        assert.equal(("bad duration '%s': write it as 250ms, 5s, 2m or 1h"):format(bad), err)
      end
      assert.equal("bad duration '1.5': write it as 250ms, 5s, 2m or 1h", select(2, dsl.duration(1.5)))
      assert.equal("bad duration '-1': write it as 250ms, 5s, 2m or 1h", select(2, dsl.duration(-1)))
      assert.equal("bad duration 'nil': write it as 250ms, 5s, 2m or 1h", select(2, dsl.duration(nil)))
    end)
  end)

  describe("check_target", function()
    before_each(function()
      app [[
luka.publisher "orders" {}
luka.consumer "audit" { topics = { "orders" }, handle = function() end }
luka.channel "notifications" { handle = function() end }
]]
    end)

    it("accepts declared publishers and channels", function()
      assert.is_true(dsl.check_target("orders"))
      assert.is_true(dsl.check_target("notifications"))
    end)

    it("rejects a consumer name, since consumers cannot be published to", function()
      assert.same({ false, "unknown publish target 'audit'; declared: orders, notifications" },
                  { dsl.check_target("audit") })
    end)

    it("suggests the nearest declared name and lists all of them", function()
      assert.same({ false, "unknown publish target 'oders' (did you mean 'orders'?); declared: orders, notifications" },
                  { dsl.check_target("oders") })
    end)

    it("says when nothing publishable is declared", function()
      dsl.reset()
      assert.same({ false, "unknown publish target 'orders': no publishers or channels are declared" },
                  { dsl.check_target("orders") })
    end)

    it("rejects a target that is not a string", function()
      assert.same({ false, "publish target must be a publisher or channel name, got nil" },
                  { dsl.check_target(nil) })
    end)
  end)

  describe("policies", function()
    it("parses retry, error channel, final failure, dedup and timeout with their defaults", function()
      local r = app([[luka.consumer "c" { topics = { "t" }, handle = function() end,
        retry = { instant = 2, delayed = { initial = "250ms", max = "2m", attempts = 5, jitter = true } },
        error_channel = "dlt", final_failure = "resend", dedup = { key = "orderId" }, timeout = "5s" }]])
      local e = r.endpoints[1]
      assert.same({ instant = 2, delayed = { initial = 250, multiplier = 2, max = 120000, attempts = 5,
                                             jitter = true } }, e.retry)
      assert.equal("dlt", e.error_channel)
      assert.equal("resend", e.final_failure)
      assert.same({ key = "orderId", ttl = 86400000, store = "memory", max_entries = 100000 }, e.dedup)
      assert.equal(5000, e.timeout)
    end)

    it("defaults to stop with a 30 s timeout", function()
      local e = app([[luka.consumer "c" { topics = { "t" }, handle = function() end }]]).endpoints[1]
      assert.equal("stop", e.final_failure)
      assert.equal(30000, e.timeout)
      assert.is_nil(e.retry)
    end)

    it("reports mistakes inside policy tables with the nearest name", function()
      assert.equal("app.lua:1: consumer 'c': option 'retry': unknown option 'instnat' (did you mean 'instant'?)",
        app_error([[luka.consumer "c" { topics = { "t" }, handle = function() end, retry = { instnat = 1 } }]]))
      assert.equal("app.lua:1: consumer 'c': option 'retry': option 'delayed': bad duration '1 second': write it as 250ms, 5s, 2m or 1h",
        app_error([[luka.consumer "c" { topics = { "t" }, handle = function() end, retry = { delayed = { initial = "1 second" } } }]]))
      assert.equal([[app.lua:1: consumer 'c': option 'dedup': option 'store' must be "memory", "sqlite:PATH" or "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]", got 'mysql']],
        app_error([[luka.consumer "c" { topics = { "t" }, handle = function() end, dedup = { store = "mysql" } }]]))
    end)
  end)

  describe("dedup store URLs", function()
    it("takes a Redis URL with a user and a password", function()
      for _, url in ipairs({ "redis://:s3cret@127.0.0.1:6379/0", "redis://app:s3cret@redis.internal:6380",
                             "redis://app:p%40ss@redis/2" }) do
        local e = app(([[luka.consumer "c" { topics = { "t" }, handle = function() end, dedup = { store = %q } }]])
          :format(url)).endpoints[1]
        assert.equal(url, e.dedup.store)
      end
    end)

    it("never shows the password of a store URL it refuses", function()
      local err = app_error([[luka.consumer "c" { topics = { "t" }, handle = function() end, dedup = { store = "redis://:s3cret@host:6379/0x" } }]])
      assert.truthy(err:find("got 'redis://:********@host:6379/0x'", 1, true), err)
      assert.falsy(err:find("s3cret", 1, true), err)
      err = app_error([[luka.consumer "c" { topics = { "t" }, handle = function() end, dedup = { store = "redis://u:p@ss@host:port" } }]])
      assert.truthy(err:find("got 'redis://u:********@host:port'", 1, true), err)
    end)

    it("redacts only a password", function()
      assert.equal("redis://host:6379/0", dsl.redact_url("redis://host:6379/0"))
      assert.equal("redis://user@host", dsl.redact_url("redis://user@host"))
      assert.equal("redis://user:********@host/1", dsl.redact_url("redis://user:pw@host/1"))
      assert.equal("sqlite:/var/lib/a@b:c.db", dsl.redact_url("sqlite:/var/lib/a@b:c.db"))
    end)
  end)

  describe("topics and runtime", function()
    it("records declared topics and the memory limit", function()
      local r = app([[luka.topic "orders" { partitions = 6, replication = 3, config = { ["retention.ms"] = 1000 } }
luka.runtime { memory_limit = "64MB" }]])
      assert.same({ name = "orders", where = "app.lua:1", partitions = 6, replication = 3,
                    config = { ["retention.ms"] = "1000" } }, r.topics[1])
      assert.equal(64 * 1024 * 1024, r.runtime.memory_limit)
    end)

    it("rejects a bad size", function()
      assert.equal("app.lua:1: runtime: bad size 'lots': write it as 512KB, 64MB or 1GB",
        app_error([[luka.runtime { memory_limit = "lots" }]]))
    end)
  end)
end)
