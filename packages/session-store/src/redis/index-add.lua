-- Adds a session id to a user's index, scored by its expiry on this node's clock, prunes expired ids and
-- keeps the index alive exactly as long as its longest-lived session: it never grows without bound.
-- KEYS: the user's index. ARGV: session id, lifetime ms.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
