-- Reads an entry's fields, as HMGET 'v' 'm' 't' 'lu' would, and checks its tags in the same round trip.
-- KEYS[1] entry hash. ARGV[1] tag key prefix (with the client's own key prefix). An entry whose tag
-- versions moved on, or whose tags cannot be read, comes back without its value (a miss); a key that
-- is not a hash comes back as an empty array.
local e = redis.pcall('HMGET', KEYS[1], 'v', 'm', 't', 'lu')
if e.err then return {} end
if e[1] and e[3] then
  local parsed = 0
  for tag, version in string.gmatch(e[3], '([^\n]+)\n([^\n]+)\n') do
    parsed = parsed + #tag + #version + 2
    -- pcall: a key of another type at a tag's place is a mismatch, not an error for every reader.
    if redis.pcall('GET', ARGV[1] .. tag) ~= version then
      parsed = -1
      break
    end
  end
  if parsed ~= #e[3] then e[1] = false end
end
return e
