-- KEYS: one container (the queue LIST or a status ZSET), [prios with the queue]
-- ARGV: msg_prefix, 'list' | 'zset', batch
-- Drop up to `batch` ids from the container (the queue: every priority's list, in claim
-- order, then each group's) and their records. Reply: the dropped ids.
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
  local base, groups = ready_groups(KEYS[1])  -- then each group's ready ids
  for g = 1, #groups do
    if #ids >= batch then break end
    local zkey = base .. 'g:' .. groups[g]
    local got = redis.call('ZRANGE', zkey, 0, batch - #ids - 1)
    if #got > 0 then redis.call('ZREMRANGEBYRANK', zkey, 0, #got - 1) end
    if redis.call('EXISTS', zkey) == 0 then
      redis.call('LREM', base .. 'groups', 1, groups[g])
    end
    for i = 1, #got do ids[#ids + 1] = got[i] end
  end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
  if #ids > 0 then
    redis.call('ZREM', KEYS[1], unpack(ids))
  end
end
local started = string.sub(KEYS[1], -8) == ':started'
for i = 1, #ids do
  local key = ARGV[1] .. ids[i]
  local r = redis.call('HMGET', key, 'dedup_ref', 'group')
  if started then group_left(topic_base(KEYS[1]), r[2]) end
  release_dedup(r[1], ids[i])
  redis.call('DEL', key)
end
return ids
