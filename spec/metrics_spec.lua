-- Metrics: what an app declares with luka.metrics (counters, gauges and
-- histograms with labels, exported as luka_app_*), checked as it declares
-- and kept across hot reloads; and luka's own figures beside them: the
-- process metrics, partitions and handler slots per endpoint, message
-- age, publish latency, build versions.  /metrics is read with Debian's
-- prometheus_client parser while `luka run --http` consumes from `luka
-- broker`.
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { topics = { "metrics_in:3", "metrics_out:1" } }
end)

teardown(function() broker.stop() end)

local metrics = H.metrics

-- The samples called name whose labels include labels.
local function samples(m, name, labels)
  local found = {}
  for _, s in ipairs(m.samples) do
    local match = s.name == name
    for k, v in pairs(labels or {}) do match = match and s.labels[k] == v end
    if match then found[#found + 1] = s end
  end
  return found
end

local function sample(m, name, labels)
  local s = samples(m, name, labels)[1]
  return s and s.value
end

-- A histogram's cumulative buckets as { [le] = count }, and its le values in order.
local function buckets(m, name, labels)
  local by, order = {}, {}
  for _, s in ipairs(samples(m, name .. "_bucket", labels)) do
    by[s.labels.le] = s.value
    order[#order + 1] = s.labels.le
  end
  return by, order
end

local function order(currency, amount, n)
  return { key = currency .. n, value = H.json_encode({ currency = currency, amount = amount }) }
end

describe("luka.metrics and luka's own metrics on /metrics", function()
  local port, proc, dir
  local ep = { endpoint = "metrics", group = "metrics" }
  local fixture = H.read_file("spec/fixtures/metrics.lua")

  setup(function()
    -- A copy, so that a test can change it and reload.
    dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", fixture)
    port = H.free_port()
    proc = H.spawn(("%s run %s/app.lua --brokers %s --http 127.0.0.1:%d"):format(H.luka, dir,
      broker.bootstrap, port), { env = { TOPIC = "metrics_in", OUT_TOPIC = "metrics_out" } })
    H.wait_until(function() return sample(metrics(port), "luka_endpoint_joined", ep) == 1 end, 20,
      "the endpoint joined")
  end)

  teardown(function() if proc then proc.stop() end end)

  it("exports the app's counters, gauges and histograms, with their labels, as messages flow", function()
    local msgs = {}
    -- 6 EUR (5, 50, ..., 300), 4 USD (700 each), 2 GBP (2000 each).
    for n = 1, 6 do msgs[#msgs + 1] = order("EUR", n == 1 and 5 or n * 50, n) end
    for n = 1, 4 do msgs[#msgs + 1] = order("USD", 700, n) end
    for n = 1, 2 do msgs[#msgs + 1] = order("GBP", 2000, n) end
    H.kcat_produce(broker.bootstrap, "metrics_in", msgs)
    local m = H.wait_until(function()
      local m = metrics(port)
      return sample(m, "luka_messages_acked_total", { publisher = "metrics_out" }) == 12 and m
    end, 20, "12 orders handled and published")

    assert.equal("counter", m.types.luka_app_orders)
    assert.equal("gauge", m.types.luka_app_last_amount)
    assert.equal("histogram", m.types.luka_app_order_amount)
    assert.equal("counter", m.types.luka_app_loads)
    assert.equal(6, sample(m, "luka_app_orders_total", { currency = "EUR" }))
    assert.equal(4, sample(m, "luka_app_orders_total", { currency = "USD" }))
    assert.equal(2, sample(m, "luka_app_orders_total", { currency = "GBP" }))
    assert.equal(1, sample(m, "luka_app_loads_total"))
    -- The gauge keeps the last value per label set; vip is a boolean label.
    assert.equal(700, sample(m, "luka_app_last_amount", { currency = "USD", vip = "true" }))
    assert.equal(2000, sample(m, "luka_app_last_amount", { currency = "GBP", vip = "true" }))
    assert.equal(0, #samples(m, "luka_app_last_amount", { currency = "EUR", vip = "true" }))
    assert.is_not_nil(sample(m, "luka_app_last_amount", { currency = "EUR", vip = "false" }))
    -- Buckets 10, 100, 1000: EUR has 5 and 100 at or under 100, the rest under 1000.
    local eur, les = buckets(m, "luka_app_order_amount", { currency = "EUR" })
    assert.same({ "10", "100", "1000", "+Inf" }, les)
    assert.same({ ["10"] = 1, ["100"] = 2, ["1000"] = 6, ["+Inf"] = 6 }, eur)
    assert.equal(5 + 100 + 150 + 200 + 250 + 300, sample(m, "luka_app_order_amount_sum", { currency = "EUR" }))
    assert.equal(6, sample(m, "luka_app_order_amount_count", { currency = "EUR" }))
    local gbp = buckets(m, "luka_app_order_amount", { currency = "GBP" })
    assert.same({ ["10"] = 0, ["100"] = 0, ["1000"] = 0, ["+Inf"] = 2 }, gbp)
    assert.equal(0, sample(m, "luka_app_sleeping"), "a metric without labels shows 0 from the start")
  end)

  it("counts one message age per message handled and one publish latency per message published", function()
    local m = metrics(port)
    local handled = sample(m, "luka_messages_handled_total", ep)
    local acked = sample(m, "luka_messages_acked_total", { publisher = "metrics_out" })
    assert.equal(12, handled)
    assert.equal("histogram", m.types.luka_message_age_seconds)
    assert.equal(handled, sample(m, "luka_message_age_seconds_count", ep))
    local age = buckets(m, "luka_message_age_seconds", ep)
    assert.equal(handled, age["+Inf"])
    assert.equal(handled, age["60"], "every message was handled within a minute of its timestamp")
    assert.is_true(sample(m, "luka_message_age_seconds_sum", ep) > 0)

    assert.equal("histogram", m.types.luka_publish_latency_seconds)
    assert.equal(acked, sample(m, "luka_publish_latency_seconds_count", { publisher = "metrics_out" }))
    local latency = buckets(m, "luka_publish_latency_seconds", { publisher = "metrics_out" })
    assert.equal(acked, latency["+Inf"])
    assert.equal(acked, latency["30"], "every delivery report came within 30 s")
    assert.is_true(sample(m, "luka_publish_latency_seconds_sum", { publisher = "metrics_out" }) > 0)
  end)

  it("extends the handler-duration buckets up to the handler's time limit (10 s here)", function()
    local m = metrics(port)
    local by, les = buckets(m, "luka_handler_duration_seconds", ep)
    assert.same({ "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
      "0.5", "1", "2.5", "5", "10", "+Inf" }, les)
    assert.equal(12, by["10"])
  end)

  it("shows assigned partitions, handler calls in flight, those waiting on I/O, and messages waiting", function()
    local m = metrics(port)
    assert.equal(3, sample(m, "luka_endpoint_assigned_partitions", ep))
    assert.equal(8, sample(m, "luka_endpoint_concurrency", ep))
    assert.equal(0, sample(m, "luka_endpoint_handlers_in_flight", ep))
    -- Three handlers sleep 3 s each on their own keys; a fourth message
    -- shares s1's key, so it waits behind it (ordering "key").
    H.kcat_produce(broker.bootstrap, "metrics_in", {
      { key = "s1", value = '{"sleep":3}' }, { key = "s2", value = '{"sleep":3}' },
      { key = "s3", value = '{"sleep":3}' }, { key = "s1", value = '{"sleep":0}' } })
    m = H.wait_until(function()
      local mm = metrics(port)
      return sample(mm, "luka_endpoint_handlers_in_flight", ep) == 3 and mm
    end, 10, "three handlers in flight")
    assert.equal(3, sample(m, "luka_endpoint_handlers_waiting_io", ep))
    assert.equal(1, sample(m, "luka_endpoint_messages_waiting", ep))
    assert.equal(3, sample(m, "luka_app_sleeping"))
    m = H.wait_until(function()
      local mm = metrics(port)
      return sample(mm, "luka_messages_handled_total", ep) == 16 and mm
    end, 15, "the sleepers done")
    assert.equal(0, sample(m, "luka_endpoint_handlers_in_flight", ep))
    assert.equal(0, sample(m, "luka_endpoint_messages_waiting", ep))
    assert.equal(0, sample(m, "luka_app_sleeping"))
    -- The message behind s1 was 3 s old when its handler started.
    local age = buckets(m, "luka_message_age_seconds", ep)
    assert.equal(16, age["+Inf"])
    assert.equal(15, age["2.5"], "one message waited 3 s behind its key")
    -- Every sleeper's call took 3 s: in the 5 s bucket, not the 2.5 s one.
    local duration = buckets(m, "luka_handler_duration_seconds", ep)
    assert.equal(13, duration["2.5"])
    assert.equal(16, duration["5"])
  end)

  it("reports the standard process metrics and the versions in luka_build_info", function()
    local m = metrics(port)
    assert.equal("counter", m.types.process_cpu_seconds)
    for _, name in ipairs({ "process_resident_memory_bytes", "process_virtual_memory_bytes",
      "process_open_fds", "process_max_fds", "process_start_time_seconds" }) do
      assert.equal("gauge", m.types[name], name)
    end
    assert.is_true(sample(m, "process_cpu_seconds_total") > 0)
    local rss = sample(m, "process_resident_memory_bytes")
    assert.is_true(rss > 4e6 and rss < 1e9, "resident " .. rss)
    assert.equal(rss, sample(m, "luka_process_resident_memory_bytes"))
    assert.is_true(sample(m, "process_virtual_memory_bytes") >= rss)
    local fds = sample(m, "process_open_fds")
    assert.is_true(fds >= 5 and fds < sample(m, "process_max_fds"), "open fds " .. fds)
    -- The same count as the kernel's list, give or take a connection.
    local listed = tonumber(H.run(("ls /proc/%d/fd | wc -l"):format(proc.pid)).stdout)
    assert.is_true(math.abs(fds - listed) <= 3, ("%d open fds, /proc lists %d"):format(fds, listed))
    local started = sample(m, "process_start_time_seconds")
    assert.is_true(started <= os.time() + 1 and started > os.time() - 300, "started at " .. started)

    local build = samples(m, "luka_build_info")[1]
    assert.equal(1, build.value)
    assert.truthy(build.labels.version:match("^%d+%.%d+%.%d+"), build.labels.version)
    local rdkafka = H.run("pkg-config --modversion rdkafka").stdout:match("[%d.]+")
    assert.equal(rdkafka, build.labels.librdkafka_version)
    assert.truthy(build.labels.lua_version:match("^5%.4%.%d+$"), build.labels.lua_version)
  end)

  it("keeps the app's metric values across a hot reload (SIGHUP)", function()
    local before = metrics(port)
    local eur = sample(before, "luka_app_orders_total", { currency = "EUR" })
    proc.kill("HUP")
    local m = H.wait_until(function()
      local mm = metrics(port)
      return sample(mm, "luka_reloads_total") == 1 and mm
    end, 10, "the reload")
    assert.equal(eur, sample(m, "luka_app_orders_total", { currency = "EUR" }))
    assert.equal(2, sample(m, "luka_app_loads_total"), "the reloaded script found the count and added its load")
    assert.same(buckets(before, "luka_app_order_amount", { currency = "USD" }),
      buckets(m, "luka_app_order_amount", { currency = "USD" }))
    -- The reloaded handlers count on from there.
    H.kcat_produce(broker.bootstrap, "metrics_in", { order("EUR", 1, 100), order("EUR", 1, 101) })
    H.wait_until(function()
      return sample(metrics(port), "luka_app_orders_total", { currency = "EUR" }) == eur + 2
    end, 15, "two more EUR orders counted")
  end)

  it("refuses a reload that declares a metric again with other labels, naming both, and keeps the values", function()
    local eur = sample(metrics(port), "luka_app_orders_total", { currency = "EUR" })
    H.write_file(dir .. "/app.lua", (fixture:gsub('{ "currency" }%)', '{ "currency", "country" })', 1)))
    finally(function() H.write_file(dir .. "/app.lua", fixture) end)
    proc.kill("HUP")
    local m = H.wait_until(function()
      local mm = metrics(port)
      return sample(mm, "luka_reload_failures_total") == 1 and mm
    end, 10, "the refused reload")
    assert.truthy(proc.output():find("luka.metrics.counter: orders_total was declared before as counter "
      .. "orders (labels: currency); declared again as counter orders (labels: currency, country)", 1, true),
      proc.output())
    assert.equal(eur, sample(m, "luka_app_orders_total", { currency = "EUR" }))
    assert.equal(1, sample(m, "luka_reloads_total"))
  end)

  it("stops cleanly", function()
    assert.equal(0, proc.stop(15))
    proc = nil
  end)
end)

describe("luka.metrics", function()
  it("checks names, labels, label values, amounts and buckets, each with its own message", function()
    local r = H.luka_test("", [=[
local luka = require "luka"
local m = luka.metrics

-- The message a call raises, without its position.
local function err(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "no error")
  return (tostring(e):gsub("^[^:]+:%d+: ", ""))
end

describe("luka.metrics", function()
  it("gives back the same metric for the same name and shape", function()
    local c = m.counter("orders_total", "Orders.", { "currency", "country" })
    assert.equal(c, m.counter("orders", "Orders, again.", { "country", "currency" }))
    assert.equal("luka.metrics.counter orders", tostring(c))
    local h = m.histogram("latency", "Latency.", nil, { 0.1, 1 })
    assert.equal(h, m.histogram("latency", "Latency.", {}, { 0.1, 1 }))
    assert.equal(m.histogram("default", "Defaults."), m.histogram("default", "Defaults.", nil, nil))
  end)

  it("refuses bad names, reserved and repeated labels", function()
    assert.equal("luka.metrics.counter: bad metric name '1x': letters, digits, _ and :, not starting with a digit, at most 200 characters",
      err(m.counter, "1x", "x"))
    assert.equal("luka.metrics.gauge: bad metric name 'a-b': letters, digits, _ and :, not starting with a digit, at most 200 characters",
      err(m.gauge, "a-b", "x"))
    assert.equal("luka.metrics.counter: bad label name 'a:b': letters, digits and _, not starting with a digit",
      err(m.counter, "x", "x", { "a:b" }))
    assert.equal("luka.metrics.histogram: label name 'le' is reserved ('le' and names starting with '__' are Prometheus' own)",
      err(m.histogram, "x", "x", { "le" }))
    assert.equal("luka.metrics.counter: label name '__name' is reserved ('le' and names starting with '__' are Prometheus' own)",
      err(m.counter, "x", "x", { "__name" }))
    assert.equal("luka.metrics.counter: label 'a' is named twice", err(m.counter, "x", "x", { "a", "a" }))
    assert.equal('luka.metrics.counter: labels must be a list such as { "currency" }',
      err(m.counter, "x", "x", { currency = "EUR" }))
    assert.equal("luka.metrics.counter: the help text of x must be a string, got no value", err(m.counter, "x"))
  end)

  it("refuses a second declaration of another shape, naming both", function()
    m.counter("paid", "Paid.", { "currency" })
    assert.equal("luka.metrics.gauge: paid was declared before as counter paid (labels: currency); declared again as gauge paid (labels: currency)",
      err(m.gauge, "paid", "x", { "currency" }))
    assert.equal("luka.metrics.counter: paid_total was declared before as counter paid (labels: currency); declared again as counter paid (labels: none)",
      err(m.counter, "paid_total", "x"))
    m.histogram("wait", "Wait.", nil, { 1, 2 })
    assert.equal("luka.metrics.histogram: wait was declared before as histogram wait (labels: none; buckets: 1, 2); declared again as histogram wait (labels: none; buckets: 1, 2, 3)",
      err(m.histogram, "wait", "x", nil, { 1, 2, 3 }))
    -- wait_count is a sample of the histogram wait.
    assert.equal("luka.metrics.gauge: wait_count would export a sample name of histogram wait (labels: none; buckets: 1, 2), declared before; declared as gauge wait_count (labels: none)",
      err(m.gauge, "wait_count", "x"))
  end)

  it("wants buckets that increase strictly", function()
    assert.equal("luka.metrics.histogram: buckets must increase strictly: 0.5 follows 1 (bucket 2)",
      err(m.histogram, "b", "x", nil, { 1, 0.5 }))
    assert.equal("luka.metrics.histogram: buckets must increase strictly: 1 follows 1 (bucket 2)",
      err(m.histogram, "b", "x", nil, { 1, 1 }))
    assert.equal("luka.metrics.histogram: bucket 1 is inf; buckets are finite (+Inf is always added)",
      err(m.histogram, "b", "x", nil, { math.huge }))
    assert.equal("luka.metrics.histogram: bucket 2 of b must be a number, got string",
      err(m.histogram, "b", "x", nil, { 1, "2" }))
    assert.equal("luka.metrics.histogram: b has 0 buckets; give 1 to 64, or nil for the defaults",
      err(m.histogram, "b", "x", nil, {}))
  end)

  it("wants exactly the declared labels on every update", function()
    local c = m.counter("sold", "Sold.", { "currency", "country" })
    assert.equal("luka.metrics: counter sold: label country is missing (labels: currency, country)",
      err(c.inc, c, { currency = "EUR" }))
    assert.equal("luka.metrics: counter sold: labels currency, country are missing (labels: currency, country)",
      err(c.inc, c))
    assert.equal("luka.metrics: counter sold: label colour is not declared (labels: currency, country)",
      err(c.inc, c, 1, { currency = "EUR", country = "FR", colour = "red" }))
    assert.equal("luka.metrics: counter sold: the value of label currency must be a string, a number or a boolean, got table",
      err(c.inc, c, { currency = {}, country = "FR" }))
    assert.equal("luka.metrics: counter sold: the value of label currency is not UTF-8 text (or holds a NUL)",
      err(c.inc, c, { currency = "\xff", country = "FR" }))
    local plain = m.gauge("plain", "No labels.")
    assert.equal("luka.metrics: gauge plain: label x is not declared (labels: none)",
      err(plain.set, plain, 1, { x = "y" }))
    plain:set(1)
    plain:set(2, {})
  end)

  it("keeps counters going up and values numbers", function()
    local c = m.counter("up", "Up.")
    assert.equal("luka.metrics: counter up: a counter only goes up: inc takes a finite amount >= 0, got -1",
      err(c.inc, c, -1))
    assert.equal("luka.metrics: counter up: takes an amount (a number) and/or label values (a table), got string",
      err(c.inc, c, "1"))
    local g = m.gauge("level", "Level.")
    assert.equal("luka.metrics: gauge level: set takes a number, got no value", err(g.set, g))
    g:inc()
    g:dec(0.5)
    local h = m.histogram("size", "Size.")
    assert.equal("luka.metrics: histogram size: observe takes a finite number, got nan", err(h.observe, h, 0 / 0))
  end)

  it("refuses a metric's 10001st label set", function()
    local g = m.gauge("by_id", "One series per id.", { "id" })
    for i = 1, 10000 do g:set(i, { id = i }) end
    g:set(0, { id = 1 }) -- an existing set is fine
    assert.equal("luka.metrics: gauge by_id: 10000 label sets already, the most a metric may have; a label whose value is different for every message (an id) makes one each time",
      err(g.set, g, 1, { id = 10001 }))
  end)
end)
]=])
    H.assert_luka_test_passed(r, 7)
  end)

  it("lets handlers in the test kit update metrics, each harness with metrics of its own", function()
    local r = H.luka_test(H.read_file("spec/fixtures/metrics.lua"), [[
local test = require "luka.test"
it("handles an order twice, in two harnesses", function()
  for _ = 1, 2 do
    local app = test.load("app.lua")
    assert.equal("handled", app:deliver("metrics", { currency = "EUR", amount = 12 }).outcome)
    app:close()
  end
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("stops the start (and luka check) when the script declares a metric wrongly, with the line", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
luka.publisher "p" {}
luka.metrics.counter("orders", "Orders.", { "le" })
]])
    local r = H.run(H.luka .. " check " .. dir .. "/app.lua")
    assert.equal(1, r.code)
    assert.truthy(r.stderr:find("app.lua:3: luka.metrics.counter: label name 'le' is reserved", 1, true), r.stderr)
  end)
end)
