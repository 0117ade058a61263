-- The source tree's shape: src/ in layers whose includes only go down, with
-- no include cycle, kept by `make lint` (scripts/lint).
local H = require "support.helper"

-- A copy of src/ to plant a bad include in.
local function copy_src()
  local dir = H.tmpdir()
  assert.equal(0, H.run(("cp -r %s/src %s/src"):format(H.q(H.root), H.q(dir))).code)
  return dir .. "/src"
end

local function lint(src) return H.run(("%s/scripts/lint %s"):format(H.q(H.root), H.q(src))) end

local function append(path, line)
  local f = assert(io.open(path, "a"))
  f:write(line, "\n")
  f:close()
end

describe("make lint", function()
  it("passes on the tree as it is", function()
    local r = H.run("make -s lint")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("every include goes down, no cycles", 1, true), r.stdout)
  end)

  it("fails on an include of a higher layer, naming the file, the line and both layers", function()
    local src = copy_src()
    append(src .. "/flow/policy.c", '#include "kafka/consumer.h"')
    local r = lint(src)
    assert.equal(1, r.code)
    assert.matches("flow/policy%.c:%d+: includes kafka/consumer%.h, a higher layer %(kafka above flow%)",
      r.stderr)
  end)

  it("fails on an include cycle inside a layer", function()
    local src = copy_src()
    append(src .. "/flow/policy.h", '#include "flow/outcome.h"')
    local r = lint(src)
    assert.equal(1, r.code)
    assert.matches("include cycle: [%w/ >-]*flow/policy", r.stderr)
  end)

  it("fails on a file outside the layer folders", function()
    local src = copy_src()
    H.write_file(src .. "/stray.c", "int stray;\n")
    local r = lint(src)
    assert.equal(1, r.code)
    assert.matches("stray%.c: not in a layer folder", r.stderr)
  end)

  it("keeps every source file under about 600 lines, each opening with its job", function()
    local p = assert(io.popen("ls " .. H.q(H.root) .. "/src/*/*.[ch]"))
    for path in p:lines() do
      local lines = H.read_lines(path)
      assert.is_true(#lines <= 660, path .. " has " .. #lines .. " lines")
      local name = path:match("([^/]+)$")
      assert.truthy(lines[1]:match("^/%* " .. name:gsub("%p", "%%%0") .. " %- "),
        path .. " does not open with a comment saying its job")
    end
    p:close()
  end)
end)
