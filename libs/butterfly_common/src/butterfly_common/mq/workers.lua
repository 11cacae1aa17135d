-- KEYS: the global workers HASH
-- ARGV: prune_after_ms (< 0: do not prune)
-- Drop records not seen for prune_after_ms when asked.
-- Reply: {now, pruned, id, json, id, json, ...} (the records kept).
local limit = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {NOW, 0}
for i = 1, #all, 2 do
  local seen = tonumber(string.match(all[i + 1], '"last_seen": (%d+)}$')) or 0
  if limit >= 0 and NOW - seen > limit then
    redis.call('HDEL', KEYS[1], all[i])
    out[2] = out[2] + 1
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
