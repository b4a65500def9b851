-- Takes the loader lock of one entry; the lock lives in the entry's own hash, so it shares its slot.
-- KEYS[1] entry hash. ARGV: 1 token, 2 lease ms.
-- Returns 0 when taken, else the ms left on the holder's lease. Taking the lock makes the token the
-- entry's fencing token: only its holder's write is accepted until someone writes or deletes the key.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[2])
local held = redis.pcall('HGET', KEYS[1], 'lu')
if type(held) == 'table' then
  redis.call('DEL', KEYS[1])
  held = false
end
if held and (tonumber(held) or 0) > now then return tonumber(held) - now end
redis.call('HSET', KEYS[1], 'lk', ARGV[1], 'lu', now + lease, 'fn', ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 0
