-- wrk script for tools/bench: every request carries a fresh W3C traceparent and B3 headers
-- (the same trace id in both), so the analyzer has trace context to parse on every request.
local counter = 0
local hex = "0123456789abcdef"

local function rand_hex(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, 16)
    t[i] = hex:sub(k, k)
  end
  return table.concat(t)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  counter = counter + 1
  local trace = rand_hex(32)
  local span = rand_hex(16)
  local headers = {
    ["traceparent"] = "00-" .. trace .. "-" .. span .. "-01",
    ["X-B3-TraceId"] = trace,
    ["X-B3-SpanId"] = span,
    ["X-B3-Sampled"] = "1",
  }
  return wrk.format("GET", "/api/items/" .. (counter % 1000) .. "?n=" .. counter, headers)
end
