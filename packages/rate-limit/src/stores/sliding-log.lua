-- Exact sliding log (see consumeLog in algorithms.ts, which this mirrors).
-- KEYS[1]: a sorted set, one member per counted unit, scored by its time (ms, Redis's clock)
-- ARGV: limit, window (ms), cost, a member prefix unique to this call, check ('1': decide without
-- counting)
-- Returns {allowed (0/1), remaining, resetMs, retryAfterMs}.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local check = ARGV[5] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])

if count + cost <= limit then
  if cost > 0 and not check then
    -- In slices: Lua cannot unpack a table of thousands of arguments.
    local n = 1
    while n <= cost do
      local args = {}
      for m = n, math.min(cost, n + 499) do
        args[#args + 1] = now
        args[#args + 1] = ARGV[4] .. ':' .. m
      end
      redis.call('ZADD', KEYS[1], unpack(args))
      n = n + 500
    end
    redis.call('PEXPIRE', KEYS[1], window)
  end
  local reset = 0
  if cost > 0 then
    reset = window
  elseif count > 0 then
    local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    reset = tonumber(newest[2]) + window - now
  end
  return {1, limit - count - cost, reset, 0}
end

-- Fits once `count + cost - limit` of the oldest units have left the window.
local retry = window
if cost <= limit then
  local freeing = redis.call('ZRANGE', KEYS[1], count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
  retry = tonumber(freeing[2]) + window - now
end
local reset = 0
if count > 0 then
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  reset = tonumber(newest[2]) + window - now
end
return {0, math.max(0, limit - count), reset, math.max(1, retry)}
