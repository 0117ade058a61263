-- summary.lua - busted output handler for luka's suite: one line per test
-- as it ends, then every failure and error with its message (as busted's
-- utfTerminal shows them), then a last line "N passed, N failed[, N skipped]"
-- that CI reads.  Errors, in a test or while loading a file, count as failed.
local pretty = require 'pl.pretty'
local system = require 'system'

local function text(message)
  if type(message) == 'string' then return message end
  if message == nil then return 'Nil error' end
  return pretty.write(message)
end

return function(options)
  local busted = require 'busted'
  local handler = require 'busted.outputHandlers.base'()
  local started = {}

  local function where(failure)
    local trace = failure.element.trace
    if trace and trace.short_src then
      return trace.short_src .. ':' .. tostring(trace.currentline)
    end
    return nil
  end

  local function describe(failure, kind)
    local out = { ('%s: %s'):format(kind, failure.name) }
    local at = where(failure)
    if at then out[#out + 1] = '  at ' .. at end
    local message = (failure.randomseed and ('Random seed: ' .. failure.randomseed .. '\n') or '')
      .. text(failure.message)
    out[#out + 1] = '  ' .. message:gsub('\n', '\n  ')
    if options.verbose and failure.trace and failure.trace.traceback then
      out[#out + 1] = failure.trace.traceback
    end
    return table.concat(out, '\n')
  end

  handler.testStart = function(element)
    started[element] = system.monotime()
    return nil, true
  end

  handler.testEnd = function(element, parent, status)
    local label = ({ success = 'ok', failure = 'FAIL', error = 'ERROR', pending = 'skip' })[status]
      or status
    local t0 = started[element]
    started[element] = nil
    local took = t0 and ('  (%.1f s)'):format(system.monotime() - t0) or ''
    io.write(('%-5s %s%s\n'):format(label, handler.getFullName(element), took))
    io.flush()
    return nil, true
  end

  handler.fileError = function(element, parent, message)
    io.write(('ERROR %s: %s\n'):format(element.name or element.descriptor, text(message)))
    io.flush()
    return nil, true
  end

  handler.suiteEnd = function()
    for _, pending in ipairs(handler.pendings) do
      io.write('\nskipped: ' .. pending.name .. '\n')
      if type(pending.message) == 'string' then io.write('  ' .. pending.message .. '\n') end
    end
    for _, failure in ipairs(handler.failures) do
      io.write('\n' .. describe(failure, 'Failure') .. '\n')
    end
    for _, err in ipairs(handler.errors) do
      io.write('\n' .. describe(err, 'Error') .. '\n')
    end
    local failed = handler.failuresCount + handler.errorsCount
    local line = ('%d passed, %d failed'):format(handler.successesCount, failed)
    if handler.pendingsCount > 0 then
      line = line .. (', %d skipped'):format(handler.pendingsCount)
    end
    io.write(('\n(%.1f s)\n%s\n'):format(handler.getDuration(), line))
    io.flush()
    return nil, true
  end

  busted.subscribe({ 'test', 'start' }, handler.testStart, { predicate = handler.cancelOnPending })
  busted.subscribe({ 'test', 'end' }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ 'suite', 'end' }, handler.suiteEnd)
  busted.subscribe({ 'error', 'file' }, handler.fileError)
  busted.subscribe({ 'failure', 'file' }, handler.fileError)
  busted.subscribe({ 'error', 'describe' }, handler.fileError)
  busted.subscribe({ 'failure', 'describe' }, handler.fileError)

  return handler
end
