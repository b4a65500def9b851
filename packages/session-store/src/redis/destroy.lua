-- Destroys a session and leaves a tombstone so no late save can bring it back.
-- KEYS: session, owner, tombstone (one slot). ARGV: tombstone ms, expected owner ('' = any).
-- With an expected owner (destroyAllForUser), a session that now belongs to someone else is left alone;
-- an id with no session yet is still tombstoned: its first save may be in flight.
-- Returns {status, owner}: 1 destroyed, 0 nothing stored (tombstoned anyway), -1 another user's.
local owner = redis.call('GET', KEYS[2])
if ARGV[2] ~= '' and owner and owner ~= ARGV[2] then
  return {-1, owner}
end
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
return {existed, owner}
