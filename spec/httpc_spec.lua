-- luka.http.request: a handler's HTTP call waits without blocking the loop,
-- returns the response (any status) or nil and an error naming the method
-- and the URL, raises on bad arguments, and lets go of its request when the
-- handler runs out of time.  luka runs spec/fixtures/httpc.lua against
-- `luka broker`, and spec/support/httpd.py answers.
local H = require "support.helper"

local broker, httpd, base

setup(function()
  broker = H.broker_start { topics = { "http_main:1", "http_late:1", "http_pair:2", "http_timer:1",
    "http_stop:1" } }
  httpd = H.spawn("python3 " .. H.q(H.root .. "/spec/support/httpd.py"))
  base = "http://127.0.0.1:" .. httpd.wait_output("listening on (%d+)", 10, "httpd's port")
end)

teardown(function()
  httpd.stop()
  broker.stop()
end)

-- Starts the fixture on topic with env added; returns the process and the
-- path of its records.
local function run(topic, env)
  local out = H.tmpdir() .. "/out.jsonl"
  env = env or {}
  env.OUT, env.TOPIC, env.GROUP = out, topic, topic
  local p = H.spawn(("%s run spec/fixtures/httpc.lua --brokers %s"):format(H.luka, broker.bootstrap),
    { env = env })
  return p, out
end

-- Produces one message per request: { id = id, opts = opts }.
local function ask(topic, requests)
  local msgs = {}
  for i, r in ipairs(requests) do
    msgs[i] = { key = r.id, value = H.json_encode({ id = r.id, opts = r.opts }) }
  end
  H.kcat_produce(broker.bootstrap, topic, msgs)
end

-- The record of message id, waiting for it.
local function record(out, id, timeout)
  return H.wait_until(function()
    for _, rec in ipairs(H.jsonl(out)) do
      if rec.id == id then return rec end
    end
  end, timeout or 30, "the record of " .. id)
end

describe("luka.http.request", function()
  local p, out, refused

  setup(function()
    refused = ("http://127.0.0.1:%d/x"):format(H.free_port())
    ask("http_main", {
      { id = "get", opts = { url = base .. "/echo?x=1" } },
      { id = "again", opts = { url = base .. "/echo" } },
      { id = "post", opts = { method = "post", url = base .. "/echo", body = '{"a":1}',
        headers = { ["Content-Type"] = "application/json", ["X-Trace"] = "abc", ["X-Num"] = 7 } } },
      { id = "put", opts = { method = "PUT", url = base .. "/echo", body = "x" } },
      { id = "delete", opts = { method = "DELETE", url = base .. "/echo" } },
      { id = "head", opts = { method = "HEAD", url = base .. "/echo" } },
      { id = "500", opts = { url = base .. "/status/500" } },
      { id = "refused", opts = { url = refused } },
      { id = "slow", opts = { url = base .. "/slow/3000", timeout = "200ms" } },
      { id = "redirect", opts = { url = base .. "/redirect/3" } },
      { id = "loop", opts = { url = base .. "/redirect/6" } },
      { id = "twice", opts = { url = base .. "/twice", timeout = 5000 } },
      { id = "no_url", opts = {} },
      { id = "bad_method", opts = { url = base .. "/echo", method = 5 } },
      { id = "bad_header", opts = { url = base .. "/echo", headers = { x = true } } },
      { id = "bad_timeout", opts = { url = base .. "/echo", timeout = "soon" } },
      { id = "misspelt", opts = { url = base .. "/echo", mehtod = "GET" } },
    })
    p, out = run("http_main")
  end)

  teardown(function() assert.equal(0, p.stop()) end)

  it("GETs a URL and returns status, lower-cased headers and body", function()
    local r = record(out, "get")
    assert.is_nil(r.err)
    assert.equal(200, r.res.status)
    assert.equal("application/json", r.res.headers["content-type"])
    local echo = H.json_decode(r.res.body)
    assert.equal("GET", echo.method)
    assert.equal("/echo?x=1", echo.path)
    assert.truthy(echo.headers["user-agent"]:match("^luka/"), echo.headers["user-agent"])
  end)

  it("POSTs a body with the handler's headers, and no Expect of curl's", function()
    local echo = H.json_decode(record(out, "post").res.body)
    assert.equal("POST", echo.method)
    assert.equal('{"a":1}', echo.body)
    assert.equal("application/json", echo.headers["content-type"])
    assert.equal("abc", echo.headers["x-trace"])
    assert.equal("7", echo.headers["x-num"])
    assert.is_nil(echo.headers.expect)
  end)

  it("sends other methods as given: PUT with a body, DELETE, HEAD", function()
    local put = H.json_decode(record(out, "put").res.body)
    assert.equal("PUT", put.method)
    assert.equal("x", put.body)
    assert.is_nil(put.headers["content-type"], "a body is sent unlabelled unless the handler labels it")
    local delete = H.json_decode(record(out, "delete").res.body)
    assert.equal("DELETE", delete.method)
    assert.equal("", delete.body, "the PUT before it, on the same kept handle, left no body")
    local head = record(out, "head").res
    assert.equal(200, head.status)
    assert.equal("", head.body)
  end)

  it("returns a 500 as a response, not an error", function()
    local r = record(out, "500")
    assert.is_nil(r.err)
    assert.equal(500, r.res.status)
    assert.equal("status 500", r.res.body)
  end)

  it("returns nil and an error naming method, URL and curl's reason when the connection is refused", function()
    local r = record(out, "refused")
    assert.is_nil(r.res)
    assert.equal("GET " .. refused .. ": ", r.err:sub(1, #refused + 6))
    assert.truthy(r.err:find("Couldn't connect to server", 1, true), r.err)
  end)

  it("gives up on a request past its own timeout, and the handler goes on", function()
    local r = record(out, "slow")
    assert.is_nil(r.res)
    assert.truthy(r.err:find("^GET " .. base:gsub("%p", "%%%0") .. "/slow/3000: .*[Tt]imed out"), r.err)
    assert.is_true(r.ms < 2000, "it waited " .. r.ms .. " ms")
  end)

  it("follows redirects, five at most", function()
    local r = record(out, "redirect")
    assert.equal(200, r.res.status)
    assert.equal("/echo", H.json_decode(r.res.body).path)
    local loop = record(out, "loop")
    assert.is_nil(loop.res)
    assert.truthy(loop.err:find("Maximum (5) redirects followed", 1, true), loop.err)
  end)

  it("joins a repeated header's values with commas", function()
    assert.equal("a, b", record(out, "twice").res.headers["x-twice"])
  end)

  it("keeps the connection alive for the next request", function()
    local first = H.json_decode(record(out, "get").res.body).peer
    local again = H.json_decode(record(out, "again").res.body).peer
    assert.equal(first, again)
  end)

  it("raises on bad arguments, naming the field", function()
    assert.truthy(record(out, "no_url").failed:find("luka.http.request: url must be a string", 1, true))
    assert.truthy(record(out, "bad_method").failed:find("luka.http.request: method must be", 1, true))
    assert.truthy(record(out, "bad_header").failed:find("headers: 'x' must be a string or a number", 1, true))
    assert.truthy(record(out, "bad_timeout").failed:find("luka.http.request: timeout must be", 1, true))
    assert.truthy(record(out, "misspelt").failed:find("unknown option 'mehtod'; did you mean 'method'?", 1,
      true))
  end)
end)

describe("luka.http.request under the test kit", function()
  it("makes the request from a handler that app:deliver runs", function()
    local r = H.luka_test(([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  local res, err = luka.http.request { url = %q .. msg.path }
  luka.publish("out", { status = res and res.status, err = err })
end }
]]):format(base), [[
local test = require "luka.test"
it("sees the response", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", { path = "/status/201" })
  assert.equal("handled", r.outcome)
  assert.equal(201, r.published[1].payload.status)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)
end)

describe("luka.http.request outside a handler", function()
  it("waits in a timer callback, and returns nil and an error while the app script loads", function()
    local p, out = run("http_timer", { TIMER_URL = base .. "/echo" })
    local recs = H.wait_jsonl(out, 2, "the load's and the timer's records")
    assert.equal(0, p.stop())
    local by = {}
    for _, r in ipairs(recs) do by[r.load and "load" or "timer"] = r end
    assert.is_nil(by.load.res)
    assert.equal("GET " .. base .. "/echo: ", by.load.err:sub(1, #base + 11))
    assert.truthy(by.load.err:find("not while the app script loads", 1, true), by.load.err)
    assert.is_nil(by.timer.err)
    assert.equal(200, by.timer.res.status)
  end)
end)

describe("a handler waiting on luka.http.request", function()
  it("fails as timed out at its own time limit, its request let go, and the host goes on", function()
    local p, out = run("http_late", { TIMEOUT = "300ms" })
    ask("http_late", {
      { id = "late", opts = { url = base .. "/slow/3000" } },
      { id = "next", opts = { url = base .. "/echo" } },
    })
    local late = record(out, "late")
    assert.truthy(late.failed:find("timed out", 1, true), late.failed)
    assert.equal(200, record(out, "next").res.status)
    -- The slow answer comes after its request was let go.
    H.sleep(3)
    assert.equal(0, p.stop())
    assert.falsy(p.output():find("Sanitizer", 1, true), p.output())
  end)

  it("does not block the loop: two messages waiting 300 ms each take well under 600 ms", function()
    local p, out = run("http_pair", { CONCURRENCY = "2" })
    ask("http_pair", {
      { id = "a", opts = { url = base .. "/slow/300" } },
      { id = "b", opts = { url = base .. "/slow/300" } },
    })
    local a, b = record(out, "a"), record(out, "b")
    assert.equal(0, p.stop())
    assert.equal("slept 300", a.res.body)
    assert.equal("slept 300", b.res.body)
    local from = math.min(a.at - a.ms / 1000, b.at - b.ms / 1000)
    local to = math.max(a.at, b.at)
    assert.is_true((to - from) * 1000 < 550, ("both took %.0f ms"):format((to - from) * 1000))
  end)

  it("lets luka stop while it waits", function()
    local p, out = run("http_stop", { TIMEOUT = "2s" })
    ask("http_stop", { { id = "wait", opts = { url = base .. "/slow/1500" } } })
    httpd.wait_output("got GET /slow/1500", 20, "the request reaching httpd")
    assert.equal(0, p.stop(10))
    assert.falsy(p.output():find("Sanitizer", 1, true), p.output())
    assert.is_not_nil(out)
  end)
end)
