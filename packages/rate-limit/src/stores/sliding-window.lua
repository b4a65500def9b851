-- Weighted two-window counter (see consumeCounter in algorithms.ts, which this mirrors).
-- KEYS[1]: a hash {i = index of the current fixed window, c = its count, p = the previous window's count}
-- ARGV: limit, window (ms), cost, check ('1': decide without counting)
-- Returns {allowed (0/1), remaining, resetMs, retryAfterMs}. Time is Redis's own, so every instance
-- agrees on it whatever its clock says.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local check = ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / window)
local elapsed = now - index * window

local state = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local stored = tonumber(state[1])
local current, previous = 0, 0
if stored ~= nil then
  if stored >= index then
    current = tonumber(state[2]) or 0
    previous = tonumber(state[3]) or 0
  elseif stored == index - 1 then
    previous = tonumber(state[2]) or 0
  end
end

local weight = (window - elapsed) / window
local estimate = previous * weight + current
if estimate + cost <= limit then
  -- The usual case, a key already counted in this window: its expiry, (index + 2) * window, is already
  -- set and i and p have not changed, so only the count moves (one HINCRBY instead of HSET + PEXPIRE).
  if check then
    current = current + cost
    local reset = 0
    if current > 0 then reset = 2 * window - elapsed elseif previous > 0 then reset = window - elapsed end
    return {1, math.max(0, math.floor(limit - previous * weight - current)), reset, 0}
  end
  if stored == index and current > 0 then
    current = redis.call('HINCRBY', KEYS[1], 'c', cost)
    return {1, math.max(0, math.floor(limit - previous * weight - current)), 2 * window - elapsed, 0}
  end
  current = current + cost
  local remaining = math.max(0, math.floor(limit - previous * weight - current))
  local reset = 0
  if current > 0 then reset = 2 * window - elapsed elseif previous > 0 then reset = window - elapsed end
  if reset > 0 then
    redis.call('HSET', KEYS[1], 'i', index, 'c', current, 'p', previous)
    redis.call('PEXPIRE', KEYS[1], reset)
  end
  return {1, remaining, reset, 0}
end

local retry
if cost > limit then
  retry = window
elseif current + cost <= limit then
  retry = math.ceil(window * (1 - (limit - current - cost) / previous) - elapsed)
else
  retry = math.ceil(window - elapsed + window * (1 - (limit - cost) / current))
end
local reset = window - elapsed
if current > 0 then reset = 2 * window - elapsed end
return {0, math.max(0, math.floor(limit - estimate)), reset, math.max(1, retry)}
