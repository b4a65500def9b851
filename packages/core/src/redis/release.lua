-- Gives the lock back after a failed load, if it is still ours; a lock-only hash is removed.
-- KEYS[1] entry hash. ARGV[1] token.
if redis.call('HGET', KEYS[1], 'lk') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  redis.call('HDEL', KEYS[1], 'lk', 'lu')
else
  redis.call('DEL', KEYS[1])
end
return 1
