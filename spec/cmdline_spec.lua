-- luka's command line, the same for every command: --help, usage errors in
-- one style with did-you-mean, --opt=value, --, durations, --version, and
-- luka's logging options anywhere; then `luka topics --check` for CI.
-- What tail and publish do with their options is in cli_spec.lua.
local H = require "support.helper"

local COMMANDS = { "run", "check", "options", "topics", "lag", "test", "publish", "tail", "broker" }

local function luka(args, opts)
  return H.run(H.q(H.luka) .. " " .. args, opts)
end

describe("luka's command line", function()
  it("prints each command's own help for -h, --help and luka help CMD, on stdout, exit 0", function()
    for _, cmd in ipairs(COMMANDS) do
      local long, short, help = luka(cmd .. " --help"), luka(cmd .. " -h"), luka("help " .. cmd)
      for _, r in ipairs({ long, short, help }) do
        assert.equal(0, r.code, cmd .. ": " .. r.stderr)
        assert.equal("", r.stderr, cmd)
        assert.truthy(r.stdout:find("^usage: luka " .. cmd), cmd .. ":\n" .. r.stdout)
        assert.truthy(r.stdout:find("-h, --help", 1, true), cmd)
      end
      assert.equal(long.stdout, short.stdout)
      assert.equal(long.stdout, help.stdout)
    end
  end)

  it("lists every command in luka --help, and prints that to stderr with exit 2 when no command is given", function()
    local r = luka("--help")
    assert.equal(0, r.code)
    for _, cmd in ipairs(COMMANDS) do
      assert.truthy(r.stdout:find("\n  " .. cmd .. " ", 1, true), cmd .. " in:\n" .. r.stdout)
    end
    local none = luka("")
    assert.equal(2, none.code)
    assert.equal(r.stdout, none.stderr)
  end)

  it("gives luka test's help for -h, and still hands busted every argument from the spec dir on", function()
    local r = luka("test --help")
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("usage: luka test [SPEC_DIR] [BUSTED_OPTIONS...]", 1, true), r.stdout)
    assert.truthy(r.stdout:find("busted's", 1, true), r.stdout)

    local dir = H.tmpdir()
    H.write_file(dir .. "/one_spec.lua", 'describe("s", function() it("passes", function() end) end)\n')
    r = H.run(("cd %s && %s test . -o TAP"):format(H.q(dir), H.q(H.luka)))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("ok 1 - s passes", 1, true), "busted's TAP output:\n" .. r.stdout)
  end)

  it("reports usage errors as 'luka CMD: MESSAGE; run 'luka CMD --help'' with exit 2, suggesting the nearest option", function()
    local cases = {
      { "run app.lua --borkers x", "luka run: unknown option '--borkers' (did you mean '--brokers'?); run 'luka run --help'" },
      { "run app.lua --wacth", "luka run: unknown option '--wacth' (did you mean '--watch'?)" },
      { "run app.lua --bogus", "luka run: unknown option '--bogus'; run 'luka run --help'" },
      { "run", "luka run: which app? usage: luka run APP [ENDPOINT...] [options]" },
      { "run app.lua --drain-timeout", "luka run: --drain-timeout needs a value: --drain-timeout DURATION" },
      { "run app.lua --watch=yes", "luka run: --watch takes no value, got '--watch=yes'" },
      { "check app.lua --watch", "luka check: unknown option '--watch'" },
      { "check a.lua b.lua", "luka check: one app at a time: got 'a.lua' and 'b.lua'" },
      { "topics app.lua --aply", "luka topics: unknown option '--aply' (did you mean '--apply'?)" },
      { "topics app.lua --check --apply", "luka topics: --check only looks and --apply changes: one at a time" },
      { "lag app.lua --apply", "luka lag: unknown option '--apply'" },
      { "lag", "luka lag: which app or group? usage: luka lag APP, or luka lag --group GROUP" },
      { "lag --gruop g", "luka lag: unknown option '--gruop' (did you mean '--group'?)" },
      { "lag --group=", "luka lag: --group needs a group id, got ''" },
      { "lag -g g --jsno", "luka lag: unknown option '--jsno' (did you mean '--json'?)" },
      { "lag -g g --timeout soon", "luka lag: --timeout takes a duration such as 500ms" },
      { "lag a.lua b.lua", "luka lag: one app at a time: got 'a.lua' and 'b.lua'" },
      { "tail t -x", "luka tail: unknown option '-x'; run 'luka tail --help'" },
      { "tail t --cuont 3", "luka tail: unknown option '--cuont' (did you mean '--count'?)" },
      { "publish -t t --partition=x", "luka publish: -p takes a partition number, got 'x'" },
      { "options extra", "luka options: unexpected argument 'extra'" },
      { "broker --port=x", "luka broker: --port: 'x' is not a port (0..65535)" },
    }
    for _, c in ipairs(cases) do
      local r = luka(c[1])
      assert.equal(2, r.code, c[1] .. ": " .. r.stderr)
      assert.truthy(r.stderr:find(c[2], 1, true), ("luka %s:\n%s"):format(c[1], r.stderr))
      assert.equal("", r.stdout, c[1])
    end
  end)

  it("suggests the nearest command and the nearest endpoint name", function()
    local r = luka("rnu config/orders.lua")
    assert.equal(2, r.code)
    assert.equal("luka: unknown command 'rnu' (did you mean 'run'?); run 'luka --help'\n", r.stderr)
    r = luka("frobnicate")
    assert.equal(2, r.code)
    assert.equal("luka: unknown command 'frobnicate'; run 'luka --help'\n", r.stderr)

    r = luka("run config/orders.lua ordrConsumers --brokers 127.0.0.1:1", { timeout = 20 })
    assert.equal(2, r.code, r.stderr)
    assert.truthy(r.stderr:find("config/orders.lua declares no endpoint named 'ordrConsumers' "
      .. "(did you mean 'orderConsumers'?)", 1, true), r.stderr)
  end)

  it("takes durations as 500ms, 5s, 2m or a bare number of milliseconds, and refuses anything else", function()
    for _, bad in ipairs({ "soon", "5x", "-1", "1.5s", "s", "" }) do
      local r = luka("run app.lua --drain-timeout " .. H.q(bad))
      assert.equal(2, r.code, bad)
      assert.truthy(r.stderr:find(("luka run: --drain-timeout takes a duration such as 500ms, 5s or 2m "
        .. "(a bare number is milliseconds), got '%s'"):format(bad), 1, true), r.stderr)
    end
    local r = luka("lag app.lua --timeout 0s")
    assert.equal(2, r.code)

    -- Accepted: luka runs (retrying a broker that is not there) until SIGTERM.
    for _, good in ipairs({ "5s", "500ms", "2m", "1500" }) do
      local p = H.spawn(("%s run spec/fixtures/bad.lua --brokers 127.0.0.1:1 --drain-timeout %s"):format(
        H.q(H.luka), good), { env = { OUT = "/dev/null", TOPIC = "t" } })
      p.wait_output("running spec/fixtures/bad.lua", 10, "luka to start with --drain-timeout " .. good)
      assert.equal(0, p.stop(), p.output())
    end
  end)

  it("waits as long as a --timeout given with a unit", function()
    local broker = H.broker_start { control = true }
    assert.equal("ok", broker.control("rtt all 1500"))
    local function took(timeout)
      local t0 = H.now()
      local r = H.run(("GROWN=g MISSING=m SAME=s %s topics spec/fixtures/ops_topics.lua --brokers=%s --timeout %s")
        :format(H.q(H.luka), H.q(broker.bootstrap), timeout), { timeout = 60 })
      return H.now() - t0, r
    end
    -- Every response comes 1.5 s late: 300ms gives up first, 5s waits.
    local short, r = took("300ms")
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("cannot read the cluster's metadata", 1, true), r.stderr)
    assert.is_true(short < 1.4, "--timeout 300ms took " .. short .. " s")
    local long
    long, r = took("5s")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.is_true(long >= 1.5, "--timeout 5s answered in " .. long .. " s")
    broker.stop()
  end)

  it("takes --opt=value and --opt value alike, and takes what follows -- as arguments", function()
    local broker = H.broker_start { topics = { "-dashed:1", "eq:1" } }
    H.kcat_produce(broker.bootstrap, "-dashed", { "d1" })
    H.kcat_produce(broker.bootstrap, "eq", { "e1" })
    local r = luka(("tail --brokers=%s --offset=beginning --count=1 --format=%%s eq"):format(H.q(broker.bootstrap)))
    assert.equal(0, r.code, r.stderr)
    assert.equal("e1", r.stdout)
    r = luka(("tail --brokers %s --offset beginning --count 1 --format %%s eq"):format(H.q(broker.bootstrap)))
    assert.equal("e1", r.stdout)
    r = luka(("tail -b%s -obeginning -c1 -f%%s -- -dashed"):format(H.q(broker.bootstrap)))
    assert.equal(0, r.code, r.stderr)
    assert.equal("d1", r.stdout)
    broker.stop()
  end)

  it("prints luka's version with librdkafka's (the one kcat reports too), Lua's and libuv's", function()
    for _, flag in ipairs({ "-V", "--version", "version" }) do
      local r = luka(flag)
      assert.equal(0, r.code)
      local lines = {}
      for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(4, #lines, r.stdout)
      assert.truthy(lines[1]:match("^luka %d+%.%d+%.%d+$"), lines[1])
      assert.truthy(lines[3]:match("^Lua 5%.4%.%d+$"), lines[3])
      assert.truthy(lines[4]:match("^libuv %d+%.%d+%.%d+$"), lines[4])
      local kcat = H.run("kcat -V 2>&1").stdout:match("librdkafka ([%d.]+)")
      assert.equal("librdkafka " .. kcat, lines[2])
    end
  end)

  it("takes --log-level and --log-format, in either form, anywhere on the line", function()
    local broker = H.broker_start { topics = { "logs:1" } }
    for _, args in ipairs({
      "--log-format json tail logs -b %s -e",
      "tail logs --log-format=json -b %s -e",
      "tail logs -b %s -e --log-format json",
    }) do
      local r = luka(args:format(H.q(broker.bootstrap)))
      assert.equal(0, r.code, args .. ": " .. r.stderr)
      local line = r.stderr:match("[^\n]+")
      assert.equal("tail", H.json_decode(line).component, args .. ": " .. r.stderr)
    end
    local r = luka(("tail logs -b %s -e --log-level=warn"):format(H.q(broker.bootstrap)))
    assert.equal(0, r.code)
    assert.equal("", r.stderr)
    r = luka("tail logs --log-level loud")
    assert.equal(2, r.code)
    assert.truthy(r.stderr:find("--log-level must be error, warn, info or debug, got 'loud'", 1, true), r.stderr)
    broker.stop()
  end)
end)

describe("luka topics --check", function()
  local broker

  setup(function()
    broker = H.broker_start { topics = { "ck_same:2", "ck_small:1" } }
  end)

  teardown(function() broker.stop() end)

  local function app(body)
    local dir = H.tmpdir()
    return H.write_file(dir .. "/app.lua", 'local luka = require "luka"\n' .. body)
  end

  it("exits 0 when every declared topic exists as declared", function()
    local path = app('luka.topic "ck_same" { partitions = 2 }\n')
    local r = luka(("topics %s --check --brokers %s --timeout 2s"):format(H.q(path), H.q(broker.bootstrap)))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("every declared topic exists as declared", 1, true), r.stdout)
  end)

  it("exits 1 on drift, printing each difference, where plain luka topics exits 0", function()
    local path = app('luka.topic "ck_same" { partitions = 2 }\n'
      .. 'luka.topic "ck_small" { partitions = 3 }\nluka.topic "ck_missing" { partitions = 1 }\n')
    local plain = luka(("topics %s --brokers %s --timeout 2s"):format(H.q(path), H.q(broker.bootstrap)))
    assert.equal(0, plain.code, plain.stderr)
    local r = luka(("topics %s --check --brokers %s --timeout 2s"):format(H.q(path), H.q(broker.bootstrap)))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("ck_small: 1 partition(s), 3 declared", 1, true), r.stdout)
    assert.truthy(r.stdout:find("ck_missing: missing", 1, true), r.stdout)
    assert.is_nil(r.stdout:find("ck_same:", 1, true))
    assert.truthy(r.stderr:find("luka topics: 2 difference(s) between " .. path .. " and the cluster at "
      .. broker.bootstrap, 1, true), r.stderr)
  end)

  it("exits 1 when a declared config cannot be compared (the embedded broker has no DescribeConfigs)", function()
    local path = app('luka.topic "ck_same" { partitions = 2, config = { ["retention.ms"] = "60000" } }\n')
    local r = luka(("topics %s --check --brokers %s --timeout 1s"):format(H.q(path), H.q(broker.bootstrap)))
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("ck_same: config retention.ms not compared: the cluster's configs could not be read", 1,
      true), r.stdout)
    assert.truthy(r.stderr:find("luka topics: 1 difference(s)", 1, true), r.stderr)
  end)
end)
