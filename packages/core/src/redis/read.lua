-- Reads an entry's fields, as HMGET 'v' 'm' 't' 'lu' would, and checks its tags in the same round trip.
-- KEYS[1] entry hash. ARGV[1] tag key prefix. An entry whose tag versions moved on comes back without
-- its value (a miss); a key that is not a hash comes back as an empty array.
local e = redis.pcall('HMGET', KEYS[1], 'v', 'm', 't', 'lu')
if e.err then return {} end
if e[1] and e[3] then
  for tag, version in string.gmatch(e[3], '([^\n]+)\n([^\n]+)\n') do
    if redis.call('GET', ARGV[1] .. tag) ~= version then
      e[1] = false
      break
    end
  end
end
return e
