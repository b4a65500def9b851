-- Acknowledges a batch a consumer is done with (flushed or dead-lettered) and removes from the stream
-- every write no consumer needs any more, so the stream's length stays the lag: XTRIM MINID up to the
-- oldest write still pending (past the last one delivered when none is) takes them off the head in
-- one pass, where XDEL searches for each id. Only writes acknowledged ahead of an older pending one
-- (another consumer's batch) are deleted by id.
-- KEYS[1] stream. ARGV[1] group, ARGV[2..] the ids. Returns how many were acknowledged.
local stream = KEYS[1]
local group = ARGV[1]
local acked = 0
for i = 2, #ARGV, 1000 do
  acked = acked + redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local keep
local pending = redis.call('XPENDING', stream, group)
if pending[1] > 0 then
  keep = pending[2]
else
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields['name'] == group then
      local ms, seq = string.match(fields['last-delivered-id'], '^(%d+)%-(%d+)$')
      keep = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
    end
  end
end
if keep == nil then return acked end
redis.call('XTRIM', stream, 'MINID', keep)
local kms, kseq = string.match(keep, '^(%d+)%-(%d+)$')
kms = tonumber(kms)
kseq = tonumber(kseq)
local ahead = {}
for i = 2, #ARGV do
  local ms, seq = string.match(ARGV[i], '^(%d+)%-(%d+)$')
  ms = tonumber(ms)
  if ms > kms or (ms == kms and tonumber(seq) >= kseq) then ahead[#ahead + 1] = ARGV[i] end
end
for i = 1, #ahead, 1000 do
  redis.call('XDEL', stream, unpack(ahead, i, math.min(i + 999, #ahead)))
end
return acked
