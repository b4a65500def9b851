-- Write-behind, a batch of writes in one atomic step: each recorded in the stream its consumers flush
-- to the database and written to the cache as set.lua writes one (write-behind-batch.test.ts
-- compares the two), then one bus message naming every key. Redis's clock is read once for the whole
-- batch, and what writes share (a profile: options and kind) is sent once.
-- KEYS[1] stream, KEYS[2..n+1] the entry hashes (single Redis only: on a Cluster they are in
-- different slots).
-- ARGV 1 bus channel ('' none), 2 bus message, 3 the fencing token the entries keep, 4 the length of the
-- prefix of the entry keys, 5 how many profiles, then 8 per profile: fencing token ('' writes
-- unconditionally), kind, ttl ms, stale-while-revalidate ms, stale-if-error ms, loader ms,
-- early-refresh beta, tags ('' none); then 3 per entry: its profile (1-based), value, the key as the
-- application named it ('' when it is the entry key without the prefix).
-- Returns {how many subscribers got the bus message, then per entry 1, or -1 when its token no longer
-- matched (the key was written, deleted or re-locked since: dropped, as set.lua drops it)}.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local stream = KEYS[1]
local token = ARGV[3]
local cut = tonumber(ARGV[4]) + 1
local profiles = {}
local a = 5
for p = 1, tonumber(ARGV[5]) do
  local ttl = tonumber(ARGV[a + 3])
  local swr = tonumber(ARGV[a + 4])
  local sie = tonumber(ARGV[a + 5])
  profiles[p] = {
    fence = ARGV[a + 1], kind = ARGV[a + 2], t = ARGV[a + 8], life = ttl + math.max(swr, sie),
    -- The entry's 'm' field, as set.lua writes it.
    m = ARGV[a + 2] .. string.format(',%d,%d,%d,%d,', now + ttl, now + ttl + swr, now + ttl + sie, now)
      .. ARGV[a + 6] .. ',' .. ARGV[a + 7],
  }
  a = a + 8
end
local reply = { 0 }
for i = 2, #KEYS do
  local key = KEYS[i]
  local p = profiles[tonumber(ARGV[a + 1])]
  local value = ARGV[a + 2]
  local name = ARGV[a + 3]
  if name == '' then name = string.sub(key, cut) end
  a = a + 3
  redis.call('XADD', stream, '*', 'k', name, 'c', p.kind, 'v', value)
  if p.fence ~= '' and redis.pcall('HGET', key, 'fn') ~= p.fence then
    reply[i] = -1
  else
    redis.call('DEL', key)
    redis.call('HSET', key, 'v', value, 'm', p.m, 'fn', token)
    if p.t ~= '' then redis.call('HSET', key, 't', p.t) end
    redis.call('PEXPIRE', key, p.life)
    reply[i] = 1
  end
end
if ARGV[1] ~= '' then reply[1] = redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return reply
