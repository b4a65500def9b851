-- Invalidates tags in O(number of tags): each gets a new version, so every entry that recorded an
-- older one is stale on its next read, however many entries carry the tag.
-- KEYS[1] the version sequence, KEYS[2..] tag keys (one hash slot). ARGV: 1 TTL ms, 2 channel, 3 message.
-- Redis's time plus a counter: never reissued, even if the counter key is evicted and starts over.
local time = redis.call('TIME')
local version = time[1] .. string.format('%06d', tonumber(time[2])) .. '-' .. redis.call('INCR', KEYS[1])
for i = 2, #KEYS do redis.call('SET', KEYS[i], version, 'PX', ARGV[1]) end
if ARGV[2] == '' then return 0 end
-- How many subscribers got the message, so the caller can wait for their acknowledgements.
return redis.call('PUBLISH', ARGV[2], ARGV[3])
