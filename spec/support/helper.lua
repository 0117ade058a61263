-- helper.lua - what luka's integration specs share: temp dirs, background
-- processes, an embedded broker with its control channel, and Kafka
-- clients independent of luka (kcat on librdkafka, KafkaJS on node).
--
--   local H = require "support.helper"
--
-- Processes are run through the shell.  Everything a spec file starts or
-- creates (processes, brokers, temp dirs) is stopped and removed when the
-- file ends; H.cleanup() does it earlier.  Waits are bounded and fail with a
-- message naming what was awaited.
local json = require "dkjson"
local system = require "system"

local H = {}

local function abspath(path)
  if path:sub(1, 1) == "/" or not path:find("/") then return path end
  return (os.getenv("PWD") or io.popen("pwd"):read("l")) .. "/" .. path:gsub("^%./", "")
end

-- The luka binary under test: $LUKA, default ./luka, made absolute.
H.luka = abspath(os.getenv("LUKA") or "./luka")
-- The repository root (specs run from it).
H.root = os.getenv("PWD") or io.popen("pwd"):read("l")

local resources = { dirs = {}, procs = {} }

-- ---------------------------------------------------------------------
-- Small utilities

-- Quotes s for a POSIX shell.
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function H.sleep(seconds) system.sleep(seconds) end

-- Seconds on a monotonic clock.
function H.now() return system.monotime() end

-- Whole file as a string, or nil when it does not exist.
function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function H.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
  return path
end

-- Lines of a file without their newlines; {} when it does not exist.  A
-- last line without a newline is included.
function H.read_lines(path)
  local lines = {}
  local data = H.read_file(path)
  if not data then return lines end
  for line in data:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local tail = data:match("([^\n]+)$")
  if tail then lines[#lines + 1] = tail end
  return lines
end

-- Decodes JSON; raises with the text on malformed input.  JSON null
-- becomes nil.
function H.json_decode(s)
  local value, _, err = json.decode(s)
  if err then error(("bad JSON (%s): %s"):format(err, s), 2) end
  return value
end

function H.json_encode(value) return json.encode(value) end

-- A fresh directory, removed when the spec file ends.
function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/luka-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  resources.dirs[#resources.dirs + 1] = dir
  return dir
end

-- Polls fn every interval_s (default 0.05) until it returns a truthy value,
-- and returns what fn returned.  An error raised by fn counts as "not yet".
-- After timeout_s (default 10) it fails naming `what`, with fn's last error
-- if any.
function H.wait_until(fn, timeout_s, what, interval_s)
  timeout_s = timeout_s or 10
  local deadline = H.now() + timeout_s
  local last_err
  while true do
    local results = table.pack(pcall(fn))
    if results[1] and results[2] then return table.unpack(results, 2, results.n) end
    if not results[1] then last_err = results[2] end
    if H.now() >= deadline then
      error(("timed out after %gs waiting for %s%s"):format(timeout_s, what or "a condition",
        last_err and (" (last error: " .. tostring(last_err) .. ")") or ""), 2)
    end
    H.sleep(interval_s or 0.05)
  end
end

-- Runs a shell command to completion.  opts.input: text for its stdin;
-- opts.timeout: seconds (default 60), after which it is killed and code is
-- 124.  Returns { code = exit code, stdout = text, stderr = text }.
function H.run(cmd, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local input = dir .. "/stdin"
  H.write_file(input, opts.input or "")
  local full = ("timeout -k 2 %d sh -c %s <%s >%s 2>%s"):format(math.ceil(opts.timeout or 60),
    H.q(cmd), H.q(input), H.q(dir .. "/stdout"), H.q(dir .. "/stderr"))
  local ok, how, code = os.execute(full)
  if how == "signal" then code = 128 + code elseif ok then code = 0 end
  return { code = code, stdout = H.read_file(dir .. "/stdout") or "",
           stderr = H.read_file(dir .. "/stderr") or "" }
end

-- A port on 127.0.0.1 that was free a moment ago.
function H.free_port()
  local r = H.run([[python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
  return assert(tonumber(r.stdout), "no free port: " .. r.stderr)
end

-- ---------------------------------------------------------------------
-- Background processes

local signals = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, TERM = 15, STOP = 19, CONT = 18 }

-- Starts a simple shell command (one program and its arguments; it is
-- exec'd, so pid is its own) in the background.  opts.stdin: a path for its
-- stdin (default /dev/null); opts.env: {NAME = value} added to its
-- environment; opts.stdout / opts.stderr: paths for its output (default:
-- both in one file of a fresh temp dir).  Returns a process handle:
--   pid                 the command's pid (the shell execs a simple command)
--   stdout_path, stderr_path
--   output()            stdout then (when separate) stderr, as text so far
--   alive()             true until it has exited
--   kill(sig)           sends sig ("TERM" default, "INT", "KILL", or a
--                       number); returns true when it was sent
--   wait(timeout_s)     exit code, or nil if still running after timeout_s
--                       (default 10); a death by signal N gives 128 + N
--   stop(timeout_s)     TERM, wait, then KILL if needed; returns wait's code
--   wait_output(pattern, timeout_s, what) waits until output() matches the
--                       Lua pattern; returns the match (or its captures)
-- Methods may be called with "." or ":".
function H.spawn(cmd, opts)
  opts = opts or {}
  assert(not cmd:match("^%s*[%a_][%w_]*="), "H.spawn: pass environment in opts.env, not in cmd")
  local dir = H.tmpdir()
  local out = opts.stdout or (dir .. "/output")
  local err = opts.stderr or out
  local pidfile, codefile = dir .. "/pid", dir .. "/code"
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = ("export %s=%s\n"):format(k, H.q(v)) end
  local redirect = err == out and ("<%s >%s 2>&1"):format(H.q(opts.stdin or "/dev/null"), H.q(out))
    or ("<%s >%s 2>%s"):format(H.q(opts.stdin or "/dev/null"), H.q(out), H.q(err))
  -- The wrapper records the command's pid, then its exit status.
  H.write_file(dir .. "/run.sh", table.concat({
    table.concat(env),
    ("( exec %s ) %s &\n"):format(cmd, redirect),
    ("echo $! > %s.tmp && mv %s.tmp %s\n"):format(H.q(pidfile), H.q(pidfile), H.q(pidfile)),
    "wait $!\n",
    ("echo $? > %s.tmp && mv %s.tmp %s\n"):format(H.q(codefile), H.q(codefile), H.q(codefile)),
  }))
  os.execute(("sh %s >/dev/null 2>&1 </dev/null &"):format(H.q(dir .. "/run.sh")))
  local pid = tonumber(H.wait_until(function() return H.read_file(pidfile) end, 10,
    "the pid of: " .. cmd, 0.005):match("%d+"))

  local proc = { pid = pid, cmd = cmd, stdout_path = out, stderr_path = err ~= out and err or nil }
  local function code()
    local c = H.read_file(codefile)
    return c and tonumber(c:match("%d+"))
  end
  local function self_less(f)
    return function(first, ...)
      if first == proc then return f(...) end
      return f(first, ...)
    end
  end
  proc.output = self_less(function()
    local text = H.read_file(out) or ""
    if err ~= out then text = text .. (H.read_file(err) or "") end
    return text
  end)
  proc.alive = self_less(function() return code() == nil end)
  proc.kill = self_less(function(sig)
    sig = sig or "TERM"
    local n = type(sig) == "number" and sig or signals[tostring(sig):upper():gsub("^SIG", "")]
    assert(n, "unknown signal " .. tostring(sig))
    if code() ~= nil then return false end
    return os.execute(("kill -%d %d 2>/dev/null"):format(n, pid)) == true
  end)
  proc.wait = self_less(function(timeout_s)
    local deadline = H.now() + (timeout_s or 10)
    repeat
      local c = code()
      if c then return c end
      H.sleep(0.02)
    until H.now() >= deadline
    return code()
  end)
  proc.stop = self_less(function(timeout_s)
    if proc.kill("TERM") then
      local c = proc.wait(timeout_s or 10)
      if c then return c end
      proc.kill("KILL")
    end
    return proc.wait(5)
  end)
  proc.wait_output = self_less(function(pattern, timeout_s, what)
    return H.wait_until(function()
      return proc.output():match(pattern)
    end, timeout_s or 10, what or ("output matching '%s' from %s"):format(pattern, cmd))
  end)
  resources.procs[#resources.procs + 1] = proc
  return proc
end

-- ---------------------------------------------------------------------
-- The embedded broker

-- Starts `luka broker` in the background and waits for its bootstrap line.
-- opts: brokers = N, topics = {"orders:4", "audit", ...}, port = P (0 for
-- a free one), control = true, log_level = "debug", args = {extra
-- arguments}, timeout = seconds to wait for the bootstrap (default 10).
-- Returns a broker handle:
--   bootstrap        the bootstrap line's value, "127.0.0.1:P[,...]"
--   addresses        that list split: {"127.0.0.1:P", ...}
--   pid, proc        the process and its handle (see H.spawn)
--   control(cmd)     (with opts.control) sends one command line, waits for
--                    its answer; returns "ok" or "error: ...", and a list
--                    of any lines printed before it (help)
--   log()            the broker's stderr so far
--   close_control()  closes the control input: the broker sees its end
--   stop(timeout_s)  SIGTERM and wait; returns the exit code (0 if clean)
-- Methods may be called with "." or ":".
function H.broker_start(opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local args = { H.q(H.luka), "broker" }
  if opts.brokers then args[#args + 1] = "--brokers " .. tonumber(opts.brokers) end
  if opts.port then args[#args + 1] = "--port " .. tonumber(opts.port) end
  for _, t in ipairs(opts.topics or {}) do args[#args + 1] = "--topic " .. H.q(t) end
  if opts.log_level then args[#args + 1] = "--log-level " .. H.q(opts.log_level) end
  if opts.control then args[#args + 1] = "--control" end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = H.q(a) end

  -- The control FIFO's write end is held open by a sleeping process, not
  -- by this one, whose file descriptors every later child would inherit
  -- (Lua cannot open files close-on-exec): killing the holder is the only
  -- way the broker's input ends.
  local fifo, holder
  if opts.control then
    fifo = dir .. "/control"
    assert(os.execute("mkfifo " .. H.q(fifo)), "mkfifo failed")
  end
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local proc = H.spawn(table.concat(args, " "), { stdin = fifo, stdout = out, stderr = err })
  if fifo then holder = H.spawn("sleep 2147483647", { stdout = fifo }) end

  local b = { proc = proc, pid = proc.pid, dir = dir }
  local line = H.wait_until(function()
    local first = H.read_lines(out)[1]
    if first and first:match("^bootstrap: ") then return first end
    if not proc.alive() then return "exited" end
  end, opts.timeout or 10, "the bootstrap line of luka broker", 0.01)
  if line == "exited" then
    error(("luka broker exited with code %s:\n%s"):format(tostring(proc.wait(0)), proc.output()), 2)
  end
  b.bootstrap = line:match("^bootstrap: (%S+)")
  b.addresses = {}
  for a in b.bootstrap:gmatch("[^,]+") do b.addresses[#b.addresses + 1] = a end

  local answered = 1 -- stdout lines consumed: the bootstrap line
  local function self_less(f)
    return function(first, ...)
      if first == b then return f(...) end
      return f(first, ...)
    end
  end
  b.control = self_less(function(cmd)
    assert(fifo, "broker was started without opts.control")
    assert(holder.alive(), "the control input was closed")
    assert(not cmd:find("\n"), "one command per call")
    -- Read-write, the open never blocks and a dead broker raises no SIGPIPE.
    local ctl = assert(io.open(fifo, "r+"))
    ctl:setvbuf("no")
    assert(ctl:write(cmd, "\n"))
    ctl:close()
    local reply, before = H.wait_until(function()
      local lines = H.read_lines(out)
      for i = answered + 1, #lines do
        if lines[i] == "ok" or lines[i]:match("^error: ") then
          local prior = table.move(lines, answered + 1, i - 1, 1, {})
          answered = i
          return lines[i], prior
        end
      end
      if not proc.alive() then return "exited" end
    end, 10, ("luka broker's answer to '%s'"):format(cmd), 0.005)
    if reply == "exited" then
      error(("luka broker exited before answering '%s'; its log:\n%s"):format(cmd, b.log()), 2)
    end
    return reply, before
  end)
  b.log = self_less(function() return H.read_file(err) or "" end)
  b.close_control = self_less(function()
    if holder then holder.stop() end
  end)
  b.stop = self_less(function(timeout_s)
    local c = proc.stop(timeout_s)
    if holder then holder.stop() end
    return c
  end)
  return b
end

-- ---------------------------------------------------------------------
-- kcat: a librdkafka client independent of luka

-- Message and key delimiters for kcat's producer; a message containing one
-- is sent on its own, as a file.
local DELIM, KEYDELIM = "\x1e\x1d\x1e", "\x1f\x1d\x1f"
local DELIM_ARG, KEYDELIM_ARG = [[\x1e\x1d\x1e]], [[\x1f\x1d\x1f]]

local function header_list(headers)
  local list = {}
  if headers == nil then return list end
  if headers[1] ~= nil then
    for _, kv in ipairs(headers) do list[#list + 1] = { kv[1], kv[2] } end
  else
    for k, v in pairs(headers) do list[#list + 1] = { k, v } end
    table.sort(list, function(a, b) return a[1] < b[1] end)
  end
  return list
end

local function header_args(headers)
  local args = {}
  for _, kv in ipairs(header_list(headers)) do
    assert(not tostring(kv[1]):find("[=%z]"), "kcat cannot send a header name with '=' or NUL")
    assert(not tostring(kv[2]):find("%z"), "kcat cannot send a header value with NUL")
    args[#args + 1] = "-H " .. H.q(tostring(kv[1]) .. "=" .. tostring(kv[2]))
  end
  return table.concat(args, " ")
end

local function kcat_run(cmd, opts)
  local r = H.run(cmd, opts)
  if r.code ~= 0 then
    error(("kcat failed (exit %s): %s\n%s"):format(tostring(r.code), cmd, r.stderr), 3)
  end
  return r
end

-- Produces messages with kcat, in order, and waits for their delivery.
-- messages: a list of strings (values) or tables { value = string or nil
-- (nil sends a null value), key = string or nil, headers = {name = value}
-- or {{name, value}, ...}, partition = n or nil (nil: kcat's partitioner,
-- by key) }.  Values and keys may hold any bytes (keys and header values
-- no NUL).  opts: timeout (s, default 30), args (extra kcat arguments, as
-- a string).  Raises with kcat's stderr on failure; returns true.
function H.kcat_produce(bootstrap, topic, messages, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local base = ("kcat -P -q -b %s -t %s -X message.timeout.ms=%d %s"):format(H.q(bootstrap), H.q(topic),
    math.max(1000, math.floor((opts.timeout or 30) * 1000) - 2000), opts.args or "")
  local nfile = 0

  -- Consecutive messages with the same partition, headers and null-ness go
  -- through one kcat; keys and values are cut by the rare delimiters.
  local run = {}
  local function flush()
    if #run == 0 then return end
    local m = run[1]
    local cmd = ("%s -K %s -D %s %s"):format(base, H.q(KEYDELIM_ARG), H.q(DELIM_ARG), header_args(m.headers))
    if m.partition then cmd = cmd .. " -p " .. tonumber(m.partition) end
    if m.value == nil then cmd = cmd .. " -Z" end
    local chunks = {}
    for _, msg in ipairs(run) do
      chunks[#chunks + 1] = (msg.key and (msg.key .. KEYDELIM) or "") .. (msg.value or "") .. DELIM
    end
    nfile = nfile + 1
    local path = ("%s/batch%d"):format(dir, nfile)
    H.write_file(path, table.concat(chunks))
    kcat_run(cmd .. " -l " .. H.q(path), { timeout = opts.timeout or 30 })
    run = {}
  end
  local function alone(msg)
    local cmd = base .. " " .. header_args(msg.headers)
    if msg.partition then cmd = cmd .. " -p " .. tonumber(msg.partition) end
    if msg.key then
      assert(not msg.key:find("%z"), "kcat cannot send a key with NUL")
      cmd = cmd .. " -k " .. H.q(msg.key)
    end
    if msg.value == nil then cmd = cmd .. " -Z" end
    nfile = nfile + 1
    local path = ("%s/message%d"):format(dir, nfile)
    H.write_file(path, msg.value or "")
    kcat_run(cmd .. " " .. H.q(path), { timeout = opts.timeout or 30 })
  end
  local function same(a, b)
    return a.partition == b.partition and (a.value == nil) == (b.value == nil)
      and H.json_encode(header_list(a.headers)) == H.json_encode(header_list(b.headers))
  end

  for _, msg in ipairs(messages) do
    if type(msg) ~= "table" then msg = { value = tostring(msg) } end
    local v, k = msg.value or "", msg.key or ""
    -- kcat -Z sends empty keys as null too, and delimiters cut messages.
    if v:find(DELIM, 1, true) or v:find(KEYDELIM, 1, true) or k:find(DELIM, 1, true)
      or k:find(KEYDELIM, 1, true) or (msg.value == nil and msg.key == "") then
      flush()
      alone(msg)
    else
      if #run > 0 and not same(run[1], msg) then flush() end
      run[#run + 1] = msg
    end
  end
  flush()
  return true
end

-- Consumes with kcat.  count: messages to read, or nil to read until the
-- end of every partition.  opts: partition (default all), offset (kcat -o:
-- "beginning" (default), "end", "stored", a number), group (a consumer
-- group: kcat -G, committing offsets), timeout (s, default 10), args
-- (extra kcat arguments, as a string).  Returns a list of records in
-- kcat's order:
--   { topic, partition, offset, key (string or nil), value (string or
--     nil), headers = {name = value} (last wins), header_list = {{name,
--     value}, ...}, timestamp (ms) }
-- and, when fewer than count arrived in time, an error message as second
-- value.
function H.kcat_consume(bootstrap, topic, count, opts)
  opts = opts or {}
  local cmd
  if opts.group then
    cmd = ("kcat -b %s -G %s -o %s -X auto.offset.reset=earliest -X session.timeout.ms=6000 %s"):format(
      H.q(bootstrap), H.q(opts.group), H.q(opts.offset or "beginning"), H.q(topic))
  else
    cmd = ("kcat -C -b %s -t %s -o %s"):format(H.q(bootstrap), H.q(topic), H.q(opts.offset or "beginning"))
    if opts.partition then cmd = cmd .. " -p " .. tonumber(opts.partition) end
  end
  cmd = cmd .. " -J -u -q " .. (count and ("-c " .. tonumber(count)) or "-e") .. " " .. (opts.args or "")
  local r = H.run(cmd, { timeout = opts.timeout or 10 })
  local records = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local j = H.json_decode(line)
    local rec = { topic = j.topic, partition = j.partition, offset = j.offset, key = j.key,
                  value = j.payload, timestamp = j.ts, headers = {}, header_list = {} }
    local hs = j.headers or {}
    for i = 1, #hs, 2 do
      rec.header_list[#rec.header_list + 1] = { hs[i], hs[i + 1] }
      rec.headers[hs[i]] = hs[i + 1]
    end
    records[#records + 1] = rec
  end
  if r.code ~= 0 and not (count and #records >= count) then
    return records, ("kcat consumed %d of %s message(s) (exit %s): %s"):format(#records,
      tostring(count or "all"), tostring(r.code), r.stderr)
  end
  return records
end

-- Cluster metadata from `kcat -L -J`, decoded: { brokers = {{id, name}},
-- topics = {{topic, partitions = {{partition, leader, ...}}}} }, or nil and
-- kcat's error.  opts: topic (only that one; a producer's metadata request
-- auto-creates it), timeout (s, default 5).
function H.kcat_metadata(bootstrap, opts)
  opts = opts or {}
  local t = opts.timeout or 5
  local cmd = ("kcat -L -J -b %s -m %d"):format(H.q(bootstrap), t)
  if opts.topic then cmd = cmd .. " -t " .. H.q(opts.topic) end
  local r = H.run(cmd, { timeout = t + 5 })
  if r.code ~= 0 then return nil, r.stderr end
  return H.json_decode(r.stdout)
end

-- The partition count of a topic per metadata, or nil and an error.
function H.partition_count(bootstrap, topic)
  local md, err = H.kcat_metadata(bootstrap, { topic = topic })
  if not md then return nil, err end
  for _, t in ipairs(md.topics or {}) do
    if t.topic == topic then return #(t.partitions or {}) end
  end
  return nil, "no topic " .. topic .. " in metadata"
end

-- ---------------------------------------------------------------------
-- KafkaJS: a Kafka client that shares no code with librdkafka

-- Runs node on spec/js/SCRIPT with args (a list; each is quoted).
-- opts.input: text for stdin; opts.messages: a list of tables sent as JSON
-- lines on stdin instead; opts.env: {NAME = value} for its environment;
-- opts.timeout: seconds (default 60).
-- Returns { code, stdout, stderr, lines = {JSON-decoded stdout lines} }.
function H.node(script, args, opts)
  opts = opts or {}
  local js = H.root .. "/spec/js"
  assert(io.open(js .. "/node_modules/kafkajs/package.json"),
    "KafkaJS is not installed in spec/js: run scripts/setup")
  local quoted = {}
  for _, a in ipairs(args or {}) do quoted[#quoted + 1] = H.q(a) end
  local input = opts.input
  if opts.messages then
    local lines = {}
    for _, m in ipairs(opts.messages) do lines[#lines + 1] = H.json_encode(m) end
    input = table.concat(lines, "\n") .. "\n"
  end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = ("%s=%s "):format(k, H.q(v)) end
  local r = H.run(("%snode %s %s"):format(table.concat(env), H.q(js .. "/" .. script), table.concat(quoted, " ")),
    { input = input, timeout = opts.timeout or 60 })
  r.lines = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local ok, v = pcall(H.json_decode, line)
    if ok then r.lines[#r.lines + 1] = v end
  end
  return r
end

-- ---------------------------------------------------------------------
-- Redis

-- Starts a redis-server on 127.0.0.1 that keeps nothing on disk, and waits
-- until it accepts connections.  opts: port (default a free one; give the
-- old one to restart a server), password (requirepass).  Returns a handle:
--   port, url         its port; redis://[:PASSWORD@]127.0.0.1:PORT
--   proc              its process (see H.spawn)
--   cli(...)          runs redis-cli with the arguments against it (db 0, or
--                     opts.db of a trailing table {db = n}); returns its
--                     output without the trailing newline, or raises
--   stop()            stops it
function H.redis_start(opts)
  opts = opts or {}
  local port = opts.port or H.free_port()
  local cmd = ("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no"):format(port)
  if opts.password then cmd = cmd .. " --requirepass " .. H.q(opts.password) end
  local proc = H.spawn(cmd)
  proc.wait_output("Ready to accept connections", 10, "redis-server on port " .. port)
  local r = { port = port, proc = proc, stop = function() return proc.stop() end,
    url = ("redis://%s127.0.0.1:%d"):format(opts.password and (":" .. opts.password .. "@") or "", port) }
  function r.cli(...)
    local args, db = { ... }, 0
    if type(args[#args]) == "table" then db = table.remove(args).db or 0 end
    local words = {}
    for i, a in ipairs(args) do words[i] = H.q(a) end
    local res = H.run(("redis-cli -p %d -n %d %s %s"):format(port, db,
      opts.password and ("--no-auth-warning -a " .. H.q(opts.password)) or "", table.concat(words, " ")))
    assert(res.code == 0, "redis-cli failed: " .. res.stderr)
    return (res.stdout:gsub("\n$", ""))
  end
  return r
end

-- ---------------------------------------------------------------------
-- Records and the test kit

-- The JSON lines at path, decoded, in order ({} while there is no file).
-- Debian's python, where python3-prometheus-client is installed (a pyenv
-- python3 earlier on PATH would not have it).
H.PY = "/usr/bin/python3"

-- luka's /metrics on port, parsed by prometheus_client:
-- { types = {family = type}, samples = { {name, labels, value}, ... } }.
function H.metrics(port)
  local r = H.run(("curl -sf --max-time 3 http://127.0.0.1:%d/metrics | %s %s"):format(port, H.PY,
    H.q(H.root .. "/spec/support/parse_metrics.py")))
  assert(r.code == 0, "prometheus_client could not parse /metrics: " .. r.stderr)
  return H.json_decode(r.stdout)
end

function H.jsonl(path)
  local out = {}
  for i, line in ipairs(H.read_lines(path)) do out[i] = H.json_decode(line) end
  return out
end

-- The records of a JSON-lines file written as arrays whose first element
-- names the record (["handled", ...]): those named name, in order.
function H.named(path, name)
  local found = {}
  for _, r in ipairs(H.jsonl(path)) do
    if r[1] == name then found[#found + 1] = r end
  end
  return found
end

-- Waits until path holds at least n (default 1) records named name;
-- returns them.
function H.wait_named(path, name, n, timeout)
  return H.wait_until(function()
    local found = H.named(path, name)
    return #found >= (n or 1) and found
  end, timeout or 20, ("%d '%s' record(s)"):format(n or 1, name))
end

-- Starts `luka run FIXTURE` against broker with TOPIC, GROUP (both topic)
-- and OUT (a new file, returned second) in its environment, plus env.
function H.run_fixture(fixture, broker, topic, env, args)
  local e = { TOPIC = topic, GROUP = topic, OUT = H.tmpdir() .. "/out" }
  for k, v in pairs(env or {}) do e[k] = v end
  local p = H.spawn(("%s run %s --brokers %s %s"):format(H.luka, fixture, broker.bootstrap,
    args or ""), { env = e })
  return p, e.OUT
end

-- Waits until path holds at least n JSON lines; returns them.
function H.wait_jsonl(path, n, what, timeout)
  return H.wait_until(function()
    local r = H.jsonl(path)
    return #r >= n and r
  end, timeout or 30, what or (n .. " records"))
end

-- Runs `luka test` on spec (a busted file's text) next to app (an app
-- script's text), in a fresh directory; returns H.run's result.
function H.luka_test(app, spec, timeout)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", app)
  H.write_file(dir .. "/x_spec.lua", spec)
  return H.run(("cd %s && %s test ."):format(H.q(dir), H.luka), { timeout = timeout or 120 })
end

-- Asserts that a `luka test` run passed, with n successes.
function H.assert_luka_test_passed(r, n)
  assert(r.code == 0, r.stdout .. r.stderr)
  assert(r.stdout:find(n .. " success", 1, true), r.stdout .. r.stderr)
end

-- ---------------------------------------------------------------------
-- Cleanup

-- Stops every process still running (TERM, then KILL) and removes temp
-- dirs.  Runs by itself when the spec file ends.
function H.cleanup()
  local procs, dirs = resources.procs, resources.dirs
  resources.procs, resources.dirs = {}, {}
  for _, p in ipairs(procs) do p.kill("TERM") end
  for _, p in ipairs(procs) do
    if p.alive() and not p.wait(5) then p.kill("KILL") end
  end
  for i = #dirs, 1, -1 do os.execute("rm -rf " .. H.q(dirs[i])) end
end

do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    local sub
    sub = busted.subscribe({ "file", "end" }, function()
      H.cleanup()
      if sub then busted.unsubscribe(sub.id, { "file", "end" }) end
      return nil, true
    end)
  end
  -- A last resort when the Lua state closes.
  H._sentinel = setmetatable({}, { __gc = function() pcall(H.cleanup) end })
end

return H
