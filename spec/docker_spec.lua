-- The container files, checked without a Docker engine (none runs here):
-- every path docker/Dockerfile and docker/compose.yml reference exists in
-- the repository, the runtime image installs exactly the libraries luka
-- links, the build image every library the Makefile builds against, and
-- the HEALTHCHECK command works against a running luka.
local H = require "support.helper"

-- Instructions of a Dockerfile: { cmd = "COPY", args = "...", stage = n }.
local function dockerfile(path)
  local text = assert(H.read_file(path), path .. " is missing")
  local out, stage = {}, 0
  text = text:gsub("\\\n", " ") -- continuation lines
  for line in text:gmatch("[^\n]+") do
    if not line:match("^%s*#") and line:match("%S") then
      local cmd, args = line:match("^%s*(%u+)%s+(.*)$")
      assert(cmd, "cannot read Dockerfile line: " .. line)
      if cmd == "FROM" then stage = stage + 1 end
      out[#out + 1] = { cmd = cmd, args = args, stage = stage }
    end
  end
  return out
end

local function scalar(s)
  s = s:gsub("%s+$", "")
  local list = s:match("^%[(.*)%]$")
  if list then
    local items = {}
    for item in list:gmatch('"([^"]*)"') do items[#items + 1] = item end
    return items
  end
  return s:match('^"(.*)"$') or s:match("^'(.*)'$") or s
end

-- The block-style YAML subset compose files are written in: nested maps,
-- "- " lists of scalars, quoted or plain scalars and ["flow", "lists"].
local function yaml(path)
  local root = {}
  local stack = { { indent = -1, node = root } }
  for line in assert(H.read_file(path), path .. " is missing"):gmatch("[^\n]+") do
    if not line:match("^%s*#") and line:match("%S") then
      local indent = #line:match("^ *")
      local body = line:sub(indent + 1)
      while indent <= stack[#stack].indent do table.remove(stack) end
      local node = stack[#stack].node
      if body:match("^%- ") then
        node[#node + 1] = scalar(body:sub(3))
      else
        local key, rest = body:match("^([^:]+):%s*(.*)$")
        assert(key, "cannot read YAML line: " .. line)
        if rest == "" then
          node[key] = {}
          stack[#stack + 1] = { indent = indent, node = node[key] }
        else
          node[key] = scalar(rest)
        end
      end
    end
  end
  return root
end

local function exists(path) return os.execute("test -e " .. H.q(path)) == true end

-- The set of packages that the apt-get installs in the RUN lines of one
-- stage of the parsed Dockerfile df name, options and later commands left out.
local function stage_packages(df, stage)
  local pkgs = {}
  for _, i in ipairs(df) do
    if i.stage == stage and i.cmd == "RUN" then
      local list = i.args:match("apt%-get install (.-)&&") or i.args:match("apt%-get install (.*)$") or ""
      for word in list:gmatch("%S+") do
        if not word:match("^%-") then pkgs[word] = true end
      end
    end
  end
  return pkgs
end

-- The Debian package that owns path.  With /lib a link to /usr/lib, dpkg
-- knows a library under whichever of the two its package ships it.
local function owner(path)
  local candidates = { path, (path:gsub("^/usr/lib/", "/lib/")), (path:gsub("^/lib/", "/usr/lib/")) }
  for _, p in ipairs(candidates) do
    local r = H.run("dpkg -S " .. H.q(p))
    if r.code == 0 then return (r.stdout:match("^([^:,]+)")) end
  end
  error("no package owns " .. path)
end

local docker = H.root .. "/docker"
local df, compose

setup(function()
  df = dockerfile(docker .. "/Dockerfile")
  compose = yaml(docker .. "/compose.yml")
end)

describe("docker/Dockerfile", function()
  it("builds on debian:bookworm and runs on debian:bookworm-slim", function()
    local froms = {}
    for _, i in ipairs(df) do
      if i.cmd == "FROM" then froms[#froms + 1] = i.args end
    end
    assert.same({ "debian:bookworm AS build", "debian:bookworm-slim" }, froms)
  end)

  it("copies only paths that exist in the build context and that its .dockerignore lets in", function()
    -- compose.yml builds with the repository root as context.
    local context = H.root
    local allowed = {}
    for _, line in ipairs(H.read_lines(docker .. "/Dockerfile.dockerignore")) do
      local keep = line:match("^!(.+)$")
      if keep then allowed[#allowed + 1] = keep:gsub("/$", "") end
    end
    local n = 0
    for _, i in ipairs(df) do
      if i.cmd == "COPY" and not i.args:match("^%-%-from=") then
        local words = {}
        for w in i.args:gmatch("%S+") do words[#words + 1] = w end
        for k = 1, #words - 1 do
          local src = words[k]:gsub("/$", "")
          assert.is_true(exists(context .. "/" .. src), "COPY source " .. src .. " is missing")
          local let_in = false
          for _, a in ipairs(allowed) do let_in = let_in or src == a or src:sub(1, #a + 1) == a .. "/" end
          assert.is_true(let_in, "COPY source " .. src .. " is excluded by Dockerfile.dockerignore")
          n = n + 1
        end
      end
    end
    assert.is_true(n >= 4, "Makefile, scripts/embed, src/ and lua/ are copied")
  end)

  -- Build stage, replayed: copy what the Dockerfile copies into an empty
  -- directory and run its make there.  Done once; the release binary it
  -- leaves is the one the runtime stage ships.
  local built
  local function docker_build()
    if built then return built end
    local dir = H.tmpdir()
    for _, i in ipairs(df) do
      if i.cmd == "COPY" and i.stage == 1 then
        local words = {}
        for w in i.args:gmatch("%S+") do words[#words + 1] = w end
        -- Docker's rules: a directory's contents go into DEST; a file goes
        -- into DEST when it ends in "/", else becomes DEST.
        local dest = dir .. "/" .. words[#words]
        for k = 1, #words - 1 do
          local src = H.root .. "/" .. words[k]
          local cmd
          if words[k]:match("/$") then
            cmd = ("mkdir -p %s && cp -r %s. %s"):format(H.q(dest), H.q(src), H.q(dest))
          elseif dest:match("/$") then
            cmd = ("mkdir -p %s && cp %s %s"):format(H.q(dest), H.q(src), H.q(dest))
          else
            cmd = ("mkdir -p %s && cp %s %s"):format(H.q(dest:match("^(.*)/")), H.q(src), H.q(dest))
          end
          assert.equal(0, H.run(cmd).code, cmd)
        end
      end
    end
    local r = H.run("cd " .. H.q(dir) .. " && make -j2 luka", { timeout = 120 })
    assert.equal(0, r.code, r.stderr)
    built = dir .. "/luka"
    return built
  end

  it("builds luka from the files it copies and nothing else", function()
    local r = H.run(H.q(docker_build()) .. " --version")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("luka %d+%.%d+"), r.stdout)
  end)

  it("copies the binary the Makefile builds into the runtime stage", function()
    local bin = H.read_file(H.root .. "/Makefile"):match("\nBIN%s+%?=%s+(%S+)")
    local copied
    for _, i in ipairs(df) do
      if i.cmd == "COPY" and i.args:match("^%-%-from=build ") then copied = i.args end
      if i.cmd == "WORKDIR" and i.stage == 1 then assert.equal("/src", i.args) end
    end
    assert.equal("--from=build /src/" .. bin .. " /usr/local/bin/luka", copied)
  end)

  it("installs, at build time, the package of every pkg-config module the Makefile uses", function()
    local build = stage_packages(df, 1)
    local mods = H.read_file(H.root .. "/Makefile"):match("\nPKGS%s+:=%s+([^\n]+)")
    for mod in mods:gmatch("%S+") do
      local pc = H.run("pkg-config --variable=pcfiledir " .. mod).stdout:gsub("%s+$", "")
      local pkg = owner(pc .. "/" .. mod .. ".pc")
      assert.is_true(build[pkg] == true, ("pkg-config module %s comes from %s, which the build stage does not install")
        :format(mod, pkg))
    end
    assert.is_true(build["build-essential"] and build["pkg-config"])
  end)

  it("installs, at run time, the package of every shared library luka links and no -dev package", function()
    local runtime = stage_packages(df, 2)
    for p in pairs(runtime) do assert.is_nil(p:match("%-dev$"), p .. " is a development package") end
    -- The release build, as the Dockerfile makes it (not the binary under
    -- test, which may be a sanitizer build).
    local bin = docker_build()
    local r = H.run("readelf -d " .. H.q(bin))
    assert.equal(0, r.code, r.stderr)
    local n = 0
    for lib in r.stdout:gmatch("Shared library: %[([^%]]+)%]") do
      local path = H.run("ldd " .. H.q(bin)).stdout:match(lib:gsub("%p", "%%%0") .. " => (%S+)")
      assert.truthy(path, "ldd does not resolve " .. lib)
      local pkg = owner(path):gsub(":amd64$", "")
      -- libc6 is part of every Debian image.
      assert.is_true(pkg == "libc6" or runtime[pkg] == true, lib .. " comes from " .. pkg ..
        ", which the runtime stage does not install")
      n = n + 1
    end
    assert.is_true(n >= 6)
  end)

  it("runs as a non-root user, with luka as entrypoint and /app/app.lua as default app", function()
    local last = {}
    for _, i in ipairs(df) do
      if i.stage == 2 then last[i.cmd] = i.args end
    end
    local uid = last.USER:match("^(%d+)")
    assert.truthy(uid, "USER is numeric, so Kubernetes can check runAsNonRoot")
    assert.is_true(tonumber(uid) > 0)
    assert.equal('["luka"]', last.ENTRYPOINT)
    assert.equal('["run", "/app/app.lua"]', last.CMD)
    assert.truthy(last.ENV:find("LUKA_HTTP=0.0.0.0:9090", 1, true))
    assert.truthy(last.HEALTHCHECK:find("/healthz", 1, true))
  end)

  it("has a HEALTHCHECK command that passes against a running luka and fails without one", function()
    local check
    for _, i in ipairs(df) do
      if i.cmd == "HEALTHCHECK" then check = i.args:match("CMD%s+(.*)$") end
    end
    assert.truthy(check)
    local broker = H.broker_start { topics = { "docker_hc:1" } }
    local port = H.free_port()
    local env = { LUKA_HTTP = "127.0.0.1:" .. port, OUT = "/dev/null", TOPIC = "docker_hc" }
    local p = H.spawn(("%s run spec/fixtures/record.lua --brokers %s"):format(H.luka, broker.bootstrap), { env = env })
    -- Docker runs a string CMD with /bin/sh -c, in the container's environment.
    local run = ("LUKA_HTTP=%s sh -c %s"):format(H.q(env.LUKA_HTTP), H.q(check))
    H.wait_until(function() return H.run(run).code == 0 end, 10, "the HEALTHCHECK to pass")
    p.stop()
    assert.is_false(H.run(run).code == 0, "the HEALTHCHECK fails once luka is gone")
    broker.stop()
  end)
end)

describe("docker/compose.yml", function()
  it("runs Kafka in KRaft mode, as broker and controller, reachable as kafka:9092", function()
    local env = compose.services.kafka.environment
    assert.equal("broker,controller", env.KAFKA_PROCESS_ROLES)
    assert.equal("1@kafka:9093", env.KAFKA_CONTROLLER_QUORUM_VOTERS)
    assert.truthy(env.KAFKA_ADVERTISED_LISTENERS:find("PLAINTEXT://kafka:9092", 1, true))
    assert.truthy(env.CLUSTER_ID)
    assert.equal("kafka:9092", compose.services["kafka-ui"].environment.KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS)
  end)

  it("builds luka from a context and Dockerfile that exist", function()
    local build = compose.services.luka.build
    local context = docker .. "/" .. build.context
    assert.is_true(exists(context), "build context " .. build.context)
    assert.is_true(exists(context .. "/" .. build.dockerfile), "dockerfile " .. build.dockerfile)
    assert.equal(H.root, H.run("cd " .. H.q(context) .. " && pwd -P").stdout:gsub("%s+$", ""))
  end)

  it("mounts config/ at /app and runs config/orders.lua, which luka check accepts", function()
    local luka = compose.services.luka
    local mounted = {}
    for _, v in ipairs(luka.volumes) do
      local host, container = v:match("^([^:]+):([^:]+)")
      assert.is_true(exists(docker .. "/" .. host), "volume source " .. host)
      mounted[container] = docker .. "/" .. host
    end
    assert.same({ "run", "/app/orders.lua" }, luka.command)
    local app = mounted["/app"] .. "/orders.lua"
    assert.is_true(exists(app))
    assert.equal("kafka:9092", luka.environment.KAFKA_BROKERS)
    assert.equal("0.0.0.0:9090", luka.environment.LUKA_HTTP)
    local r = H.run(("KAFKA_BROKERS=kafka:9092 %s check %s"):format(H.luka, H.q(app)))
    assert.equal(0, r.code, r.stderr)
  end)
end)

describe("docker/compose.yml's topics service and restarts", function()
  it("creates the app's topics with luka topics --apply before luka starts, and restarts luka on failure", function()
    local topics, luka = compose.services.topics, compose.services.luka
    assert.same({ "topics", "/app/orders.lua", "--apply" }, topics.command)
    assert.equal(luka.image, topics.image)
    assert.same(luka.volumes, topics.volumes)
    assert.equal("kafka:9092", topics.environment.KAFKA_BROKERS)
    assert.equal("service_completed_successfully", luka.depends_on.topics.condition)
    assert.equal("unless-stopped", luka.restart)
    assert.truthy(compose.services["kafka-ui"].image:match("^ghcr%.io/kafbat/kafka%-ui:"))
  end)
end)

describe("docker/Dockerfile's labels and references", function()
  it("labels the image with OCI annotations and points only to documents that exist", function()
    local labels = {}
    for _, i in ipairs(df) do
      if i.cmd == "LABEL" then
        for k, v in i.args:gmatch('([%w%.%-]+)="([^"]*)"') do labels[k] = v end
      end
    end
    for _, k in ipairs { "title", "description", "version", "documentation" } do
      assert.truthy(labels["org.opencontainers.image." .. k], "label org.opencontainers.image." .. k)
    end
    for path in H.read_file(docker .. "/Dockerfile"):gmatch("([%w_%-/]+%.md)") do
      assert.is_true(exists(H.root .. "/" .. path), "the Dockerfile refers to " .. path .. ", which does not exist")
    end
  end)
end)

describe("the README's Kubernetes example", function()
  it("ships in its ConfigMap every file the app requires, so luka check passes on the mounted tree", function()
    local readme = H.read_file(H.root .. "/README.md")
    local section = readme:match("\n### Kubernetes\n(.-)\n### ")
    assert.truthy(section, "README has a Kubernetes section")
    -- The volume's items: key -> path under the mount.
    local items = {}
    for key, path in section:gmatch("{ key: ([%w%._%-]+), path: ([%w%._%-/]+) }") do items[key] = path end
    -- kubectl create configmap ... --from-file=SOURCE: the key is the file name.
    local cmd = section:match("kubectl create configmap [^\n]+")
    assert.truthy(cmd, "a kubectl create configmap line")
    local dir, n = H.tmpdir(), 0
    for source in cmd:gmatch("%-%-from%-file=(%S+)") do
      local key = source:match("([^/]+)$")
      assert.truthy(items[key], key .. " is created in the ConfigMap but not mounted by the volume's items")
      local dest = dir .. "/" .. items[key]
      assert.equal(0, H.run(("mkdir -p %s && cp %s %s"):format(H.q(dest:match("^(.*)/")),
        H.q(H.root .. "/" .. source), H.q(dest))).code)
      n = n + 1
    end
    assert.is_true(n >= 2)
    local args = section:match('args: %["run", "([^"]+)"%]')
    assert.truthy(args)
    local app = dir .. "/" .. args:gsub("^/app/", "")
    local r = H.run(("cd / && KAFKA_BROKERS=kafka:9092 %s check %s"):format(H.luka, H.q(app)))
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)
end)
