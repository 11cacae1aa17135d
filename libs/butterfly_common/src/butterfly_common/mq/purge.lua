-- KEYS: one container (the queue LIST or a status ZSET), [prios with the queue]
-- ARGV: msg_prefix, 'list' | 'zset', batch
-- Drop up to `batch` ids from the container (the queue: every priority's list, in claim
-- order) and their records. Reply: the dropped ids.
local batch = tonumber(ARGV[3])
local ids
if ARGV[2] == 'list' then
  ids = {}
  for _, ready in ipairs(ready_lists(KEYS[1], KEYS[2])) do
    local got = redis.call('LRANGE', ready[1], 0, batch - #ids - 1)
    redis.call('LTRIM', ready[1], #got, -1)
    drop_if_empty(KEYS[2], ready[1], ready[2])
    for i = 1, #got do ids[#ids + 1] = got[i] end
    if #ids >= batch then break end
  end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
  if #ids > 0 then
    redis.call('ZREM', KEYS[1], unpack(ids))
  end
end
for i = 1, #ids do
  local key = ARGV[1] .. ids[i]
  release_dedup(redis.call('HGET', key, 'dedup_ref'), ids[i])
  redis.call('DEL', key)
end
return ids
