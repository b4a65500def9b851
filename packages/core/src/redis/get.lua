-- The read on a Cluster: judges an entry on the clock of the node that holds it, so hosts whose clocks
-- disagree still agree on freshness. KEYS[1] entry hash. The caller checks the tags (a Cluster keeps tag
-- versions in another slot).
-- Returns {0, lockMsLeft} for a miss, or {1, value, kind, freshMs, staleMs, errorMs, ageMs, loadMs,
-- earlyRefresh, tags, lockMsLeft} with every time relative to now. Anything that is not an entry
-- (another type, a missing or malformed 'm') is removed and reads as a miss.
local e = redis.pcall('HMGET', KEYS[1], 'v', 'm', 't', 'lu')
if e.err then
  redis.call('DEL', KEYS[1])
  return {0, 0}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lockLeft = 0
if e[4] then lockLeft = math.max(0, (tonumber(e[4]) or 0) - now) end
if not e[1] then return {0, lockLeft} end
local kind, fresh, stale, err, created, load, early
if e[2] then
  kind, fresh, stale, err, created, load, early = string.match(e[2], '^(.),(%d+),(%d+),(%d+),(%d+),([^,]+),([^,]+)$')
end
fresh, stale, err, created, load = tonumber(fresh), tonumber(stale), tonumber(err), tonumber(created), tonumber(load)
if not (fresh and stale and err and created and load) then
  redis.call('DEL', KEYS[1])
  return {0, 0}
end
return {1, e[1], kind, fresh - now, stale - now, err - now, now - created, load, early, e[3] or false, lockLeft}
