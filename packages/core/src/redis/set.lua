-- Writes an entry atomically with its expiry and tells other processes' L1s.
-- KEYS[1] entry hash. ARGV: 1 fencing token ('' writes unconditionally), 2 value, 3 kind, 4 ttl ms,
-- 5 stale-while-revalidate ms, 6 stale-if-error ms, 7 loader ms, 8 early-refresh beta, 9 tags ('' none),
-- 10 the token the entry keeps, 11 bus channel ('' none), 12 bus message.
-- A token that no longer matches means the key was written, deleted or re-locked since the loader
-- began: its result is older than what is there, so it is dropped (returns -1). Otherwise returns how
-- many subscribers got the bus message.
if ARGV[1] ~= '' then
  local fence = redis.pcall('HGET', KEYS[1], 'fn')
  if fence ~= ARGV[1] then return -1 end
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[4])
local swr = tonumber(ARGV[5])
local sie = tonumber(ARGV[6])
redis.call('DEL', KEYS[1])
-- m: kind, fresh/stale/error deadlines and creation on Redis's clock, loader ms, early-refresh beta.
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'm', ARGV[3] .. string.format(',%d,%d,%d,%d,', now + ttl,
  now + ttl + swr, now + ttl + sie, now) .. ARGV[7] .. ',' .. ARGV[8], 'fn', ARGV[10])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 't', ARGV[9]) end
redis.call('PEXPIRE', KEYS[1], ttl + math.max(swr, sie))
if ARGV[11] == '' then return 0 end
return redis.call('PUBLISH', ARGV[11], ARGV[12])
