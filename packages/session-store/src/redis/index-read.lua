-- Prunes expired ids from a user's index and returns the rest: {id, expiry ms, id, expiry ms, ...}.
-- KEYS: the user's index.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
