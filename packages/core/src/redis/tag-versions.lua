-- The current version of each tag, creating missing ones, so that an entry never records a version
-- that a later expiry or eviction of the tag key could bring back.
-- KEYS[1] the version sequence, KEYS[2..] tag keys (all in one hash slot). ARGV[1] tag key TTL ms.
-- Redis's time plus a counter: never reissued, even if the counter key is evicted and starts over.
local function newVersion()
  local time = redis.call('TIME')
  return time[1] .. string.format('%06d', tonumber(time[2])) .. '-' .. redis.call('INCR', KEYS[1])
end
local versions = {}
for i = 2, #KEYS do
  local version = redis.call('GET', KEYS[i])
  if not version then
    version = newVersion()
    redis.call('SET', KEYS[i], version, 'PX', ARGV[1])
  end
  versions[i - 1] = version
end
return versions
