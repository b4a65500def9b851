-- Reads an entry and judges it on Redis's clock, so hosts whose clocks disagree still agree on freshness.
-- KEYS[1] entry hash. ARGV[1] tag key prefix: tags are checked here when given; '' leaves it to the
-- caller (a Cluster keeps tag versions in another slot).
-- Returns {0, lockMsLeft} for a miss, or {1, value, kind, freshMs, staleMs, errorMs, ageMs, loadMs,
-- earlyRefresh, tags, lockMsLeft} with every time relative to now. Anything that is not an entry
-- (another type, missing or non-numeric fields) is removed and reads as a miss.
local e = redis.pcall('HMGET', KEYS[1], 'v', 'k', 'f', 'w', 'x', 'c', 'd', 'r', 't', 'lu')
if e.err then
  redis.call('DEL', KEYS[1])
  return {0, 0}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lockLeft = 0
if e[10] then lockLeft = math.max(0, (tonumber(e[10]) or 0) - now) end
if not e[1] then return {0, lockLeft} end
local fresh, stale, err, created, load = tonumber(e[3]), tonumber(e[4]), tonumber(e[5]), tonumber(e[6]), tonumber(e[7])
if not (fresh and stale and err and created and load and e[2]) then
  redis.call('DEL', KEYS[1])
  return {0, 0}
end
if e[9] and ARGV[1] ~= '' then
  for tag, version in string.gmatch(e[9], '([^\n]+)\n([^\n]+)\n') do
    if redis.call('GET', ARGV[1] .. tag) ~= version then return {0, lockLeft} end
  end
end
return {1, e[1], e[2], fresh - now, stale - now, err - now, now - created, load, e[8] or '0', e[9] or false, lockLeft}
