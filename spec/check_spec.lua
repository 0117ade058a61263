-- luka check: an app script's mistakes are reported before anything
-- connects, naming the file and line, and a good app prints its topology.
local H = require "support.helper"

local function check(src)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", src)
  local r = H.run(("cd %s && %s check app.lua"):format(H.q(dir), H.luka))
  return r.code, r.stdout, r.stderr
end

describe("luka check", function()
  it("prints the resolved topology of the example app", function()
    local r = H.run(H.luka .. " check config/orders.lua")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("publisher orders -> topic orders, key from field orderId", 1, true))
    assert.truthy(r.stdout:find("consumer orderConsumers <- topics orders, group order_subscriber", 1, true))
    assert.truthy(r.stdout:find("consumer orderAudit <- topics orders, group order_audit", 1, true))
  end)

  it("names the file, the line and the nearest option for an unknown option", function()
    local code, _, err = check([[
local luka = require "luka"

luka.consumer "orders" { topic = { "orders" }, handle = function() end }
]])
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:3: consumer 'orders': unknown option 'topic' (did you mean 'topics'?)", 1, true), err)
  end)

  it("reports a wrong type, a missing handler, an empty topic list and a duplicate name", function()
    local cases = {
      { 'luka.consumer "c" { topics = "orders", handle = function() end }', "option 'topics' must be a list of topic names, got string" },
      { 'luka.consumer "c" { topics = { "orders" } }', "missing handler" },
      { 'luka.consumer "c" { topics = {}, handle = function() end }', "'topics' is empty" },
      { 'luka.publisher "p" {}\nluka.channel "p" { handle = function() end }', "app.lua:3: channel 'p': name already used by publisher 'p' at app.lua:2" },
      { 'luka.consumer "c" { topics = { "t" }, handle = function() end, retry = { delayed = { initial = "soon" } } }', "bad duration 'soon'" },
      { 'luka.consumer "c" { topics = { "t" }, handle = function() end, final_failure = "stpo" }', "(did you mean 'stop'?)" },
    }
    for _, c in ipairs(cases) do
      local code, _, err = check('local luka = require "luka"\n' .. c[1] .. "\n")
      assert.equal(1, code, c[1])
      assert.truthy(err:find(c[2], 1, true), ("expected %q in %q"):format(c[2], err))
      assert.truthy(err:find("app.lua:%d"), "names file and line: " .. err)
    end
  end)

  it("reports a publish to an unknown target with the line of the call", function()
    local code, _, err = check([[
local luka = require "luka"
luka.publisher "orders" {}
luka.publish("oders", { n = 1 })
]])
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:3: unknown publish target 'oders' (did you mean 'orders'?)", 1, true), err)
  end)

  it("reports an unknown librdkafka property before connecting", function()
    local code, _, err = check([[
local luka = require "luka"
luka.publisher "orders" { config = { ["acks2"] = "all" } }
]])
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:2: publisher 'orders': config", 1, true), err)
    assert.truthy(err:find("acks2", 1, true), err)
  end)

  it("refuses the librdkafka properties luka sets itself, naming the option to use instead", function()
    local cases = {
      { 'luka.consumer "c" { topics = { "t" }, config = { ["group.id"] = "other" }, handle = function() end }',
        [[app.lua:2: consumer 'c': config sets group.id: luka sets it from the endpoint's group option; use group = "other" instead]] },
      { 'luka.channel "c" { config = { ["group.id"] = "other" }, handle = function() end }',
        [[app.lua:2: channel 'c': config sets group.id: luka sets it from the endpoint's group option; use group = "other" instead]] },
      { 'luka.consumer "c" { topics = { "t" }, config = { ["enable.auto.offset.store"] = true }, handle = function() end }',
        "app.lua:2: consumer 'c': config sets enable.auto.offset.store: luka stores offsets only when a message is done; remove it" },
      { 'luka.consumer "c" { topics = { "t" }, config = { ["enable.auto.commit"] = false }, handle = function() end }',
        "app.lua:2: consumer 'c': config sets enable.auto.commit:" },
      { 'luka.publisher "p" { config = { ["transactional.id"] = "tx" } }',
        "app.lua:2: publisher 'p': config sets transactional.id: a producer of luka's with its own transactional.id fails every publish outside a transaction; remove it; for exactly-once consume→publish set transactional = true on the consumer whose handlers publish (README, \"Exactly-once\")" },
      { 'luka.publisher "p" { config = { ["delivery.report.only.error"] = true } }',
        "app.lua:2: publisher 'p': config sets delivery.report.only.error:" },
      { 'luka.broker { config = { ["enable.auto.offset.store"] = "true" } }\nluka.publisher "p" {}',
        "app.lua:2: broker: config sets enable.auto.offset.store:" },
      { 'luka.broker { config = { ["transactional.id"] = "tx" } }\nluka.publisher "p" {}',
        "app.lua:2: broker: config sets transactional.id:" },
      { 'luka.broker { config = { ["bootstrap.servers"] = "k:9092" } }\nluka.publisher "p" {}',
        [[app.lua:2: broker: config sets bootstrap.servers: luka sets it from --brokers, the brokers option or KAFKA_BROKERS; use brokers = "k:9092" instead]] },
    }
    for _, c in ipairs(cases) do
      local code, out, err = check('local luka = require "luka"\n' .. c[1] .. "\n")
      assert.equal(1, code, c[1] .. "\n" .. out)
      assert.truthy(err:find(c[2], 1, true), ("expected %q in %q"):format(c[2], err))
    end
  end)

  it("refuses the same properties from LUKA_KAFKA_* variables, naming the variable", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", 'local luka = require "luka"\n' ..
      'luka.consumer "c" { topics = { "t" }, handle = function() end }\n')
    local r = H.run(("cd %s && LUKA_KAFKA_ENABLE_AUTO_OFFSET_STORE=true %s check app.lua"):format(H.q(dir), H.luka))
    assert.equal(1, r.code, r.stdout)
    assert.truthy(r.stderr:find("environment LUKA_KAFKA_ENABLE_AUTO_OFFSET_STORE sets enable.auto.offset.store: " ..
      "luka stores offsets only when a message is done; remove it", 1, true), r.stderr)
    r = H.run(("cd %s && LUKA_KAFKA_GROUP_ID=other %s check app.lua"):format(H.q(dir), H.luka))
    assert.equal(1, r.code, r.stdout)
    assert.truthy(r.stderr:find("environment LUKA_KAFKA_GROUP_ID sets group.id:", 1, true), r.stderr)
  end)

  it("has luka run refuse them too, before connecting", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", 'local luka = require "luka"\n' ..
      'luka.consumer "c" { topics = { "t" }, config = { ["group.id"] = "other" }, handle = function() end }\n')
    local r = H.run(("cd %s && %s run app.lua --brokers 127.0.0.1:1"):format(H.q(dir), H.luka), { timeout = 10 })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy((r.stdout .. r.stderr):find("config sets group.id", 1, true), r.stdout .. r.stderr)
    H.write_file(dir .. "/app.lua", 'local luka = require "luka"\n' ..
      'luka.consumer "c" { topics = { "t" }, handle = function() end }\n')
    r = H.run(("cd %s && LUKA_KAFKA_TRANSACTIONAL_ID=tx %s run app.lua --brokers 127.0.0.1:1"):format(H.q(dir), H.luka),
      { timeout = 10 })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy((r.stdout .. r.stderr):find("environment LUKA_KAFKA_TRANSACTIONAL_ID sets transactional.id", 1, true),
      r.stdout .. r.stderr)
  end)

  it("still takes the properties luka only tunes", function()
    local code, _, err = check([[
local luka = require "luka"
luka.broker { config = { ["statistics.interval.ms"] = 5000 } }
luka.publisher "p" { config = { acks = "1", ["enable.idempotence"] = true } }
luka.consumer "c" { topics = { "t" }, handle = function() end,
  config = { ["auto.commit.interval.ms"] = 5000, ["enable.partition.eof"] = true, ["auto.offset.reset"] = "earliest" } }
]])
    assert.equal(0, code, err)
  end)

  it("reports a syntax error and an error at load time with file and line", function()
    local code, _, err = check("local luka = require 'luka'\nluka.consumer 'x' {\n")
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:3:", 1, true), err)
    code, _, err = check("local luka = require 'luka'\nlocal x = nil\nprint(x.y)\n")
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:3: attempt to index", 1, true), err)
  end)

  it("stops a script that loops forever at load time", function()
    local code, _, err = check("while true do end\n")
    assert.equal(1, code)
    assert.truthy(err:find("timed out", 1, true), err)
  end)
  it("prints each endpoint's policies: timeout, retries with their backoffs, error channel, final failure, dedup", function()
    local code, out, err = check([[
local luka = require "luka"
luka.publisher "dead" { topic = "orders_dlt" }
luka.consumer "orders" { topics = { "orders" }, timeout = "5s",
  retry = { instant = 1, delayed = { initial = "500ms", multiplier = 3, max = "10s", attempts = 4, jitter = true } },
  error_channel = "dead", final_failure = "resend",
  dedup = { key = "orderId", ttl = "2h", store = "sqlite:dedup.db" },
  handle = function() end }
luka.consumer "audit" { topics = { "orders" }, error_channel = function() end, final_failure = "ignore",
  dedup = { header = "x-request-id", max_entries = 500 }, handle = function() end }
luka.channel "plain" { handle = function() end }
]])
    assert.equal(0, code, err)
    local expected = {
      "  consumer orders <- topics orders, group orders, format json   (app.lua:3)\n" ..
      "      timeout: 5s\n" ..
      "      retry: 1 instant, 4 delayed after 500ms, 1500ms, 4500ms, 10s (x3, max 10s, jitter up to half off): up to 10 calls\n" ..
      "      error channel: publisher dead (topic orders_dlt)\n" ..
      "      final failure: resend\n" ..
      "      dedup: key from field orderId, store sqlite:dedup.db, ttl 2h\n",
      "  consumer audit <- topics orders, group audit, format json   (app.lua:8)\n" ..
      "      timeout: 30s\n" ..
      "      retry: none (1 call)\n" ..
      "      error channel: a function\n" ..
      "      final failure: ignore\n" ..
      "      dedup: key from header x-request-id, store memory (at most 500 keys), ttl 24h\n",
      "  channel plain <- topics plain, group plain, format json   (app.lua:10)\n" ..
      "      timeout: 30s\n" ..
      "      retry: none (1 call)\n" ..
      "      error channel: none\n" ..
      "      final failure: stop\n" ..
      "      dedup: off\n",
    }
    for _, block in ipairs(expected) do
      assert.truthy(out:find(block, 1, true), ("expected\n%s\nin\n%s"):format(block, out))
    end
  end)

  it("lists the librdkafka properties that came from LUKA_KAFKA_*, secrets masked", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", 'local luka = require "luka"\nluka.publisher "p" {}\n')
    local r = H.run(("cd %s && LUKA_KAFKA_SASL_PASSWORD=hunter22 LUKA_KAFKA_SASL_USERNAME=app " ..
      "LUKA_KAFKA_SECURITY_PROTOCOL=sasl_plaintext LUKA_KAFKA_SASL_MECHANISM=PLAIN %s check app.lua"):format(H.q(dir), H.luka))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local block = "  librdkafka properties from LUKA_KAFKA_*, on every client:\n" ..
      "      sasl.mechanism = PLAIN   (LUKA_KAFKA_SASL_MECHANISM)\n" ..
      "      sasl.password = ********   (LUKA_KAFKA_SASL_PASSWORD)\n" ..
      "      sasl.username = app   (LUKA_KAFKA_SASL_USERNAME)\n" ..
      "      security.protocol = sasl_plaintext   (LUKA_KAFKA_SECURITY_PROTOCOL)\n" ..
      "ok\n"
    assert.truthy(r.stdout:find(block, 1, true), r.stdout)
    assert.falsy((r.stdout .. r.stderr):find("hunter22", 1, true), r.stdout .. r.stderr)
  end)

  it("never shows a dedup store's password: not in its topology, not in an error", function()
    local code, out, err = check([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, dedup = { store = "redis://app:s3cret@127.0.0.1:6379/0" }, handle = function() end }
]])
    assert.equal(0, code, err)
    assert.truthy(out:find("store redis://app:********@127.0.0.1:6379/0, ttl 24h", 1, true), out)
    assert.falsy(out:find("s3cret", 1, true), out)
    code, out, err = check([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, dedup = { store = "redis://:s3cret@host:6379/0x" }, handle = function() end }
]])
    assert.equal(1, code, out)
    assert.truthy(err:find("got 'redis://:********@host:6379/0x'", 1, true), err)
    assert.falsy(err:find("s3cret", 1, true), err)
  end)

  it("blanks a URL's password in any log line", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", 'error("cannot reach redis://app:s3cret@10.0.0.1:6379/0 today")\n')
    local r = H.run(("cd %s && %s run app.lua --brokers 127.0.0.1:1"):format(H.q(dir), H.luka), { timeout = 10 })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("redis://app:********@10.0.0.1:6379/0 today", 1, true), r.stderr)
    assert.falsy(r.stderr:find("s3cret", 1, true), r.stderr)
  end)

  -- Found by the redis_url fuzz harness: the URL's end was looked for as in
  -- a line of text, where ')' ends one, so a password holding it was shown.
  it("masks the password of a Redis URL it cannot parse, even one holding ')'", function()
    local code, _, err = check([[
local luka = require "luka"
local r = luka.redis("redis://:)pa,ss@[::1]:6379")
luka.consumer "c" { topics = { "t" }, handle = function() end }
]])
    assert.equal(1, code, err)
    assert.truthy(err:find("redis://:********@[::1]:6379", 1, true), err)
    assert.falsy(err:find("pa,ss", 1, true), err)
  end)
end)
