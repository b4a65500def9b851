-- Saves a session unless it was destroyed: a request that loaded the session before a logout and saves
-- it after must not bring it back, so the tombstone is checked in the same atomic step as the write.
-- KEYS: session, owner, tombstone (one hash tag, one slot). ARGV: payload, lifetime ms, owner ('' = none).
-- Returns {status, previous owner}: 1 written, 0 refused (destroyed), 2 removed (already expired).
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {0, false}
end
local previous = redis.call('GET', KEYS[2])
local px = tonumber(ARGV[2])
if px <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {2, previous}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[3], 'PX', px)
end
return {1, previous}
