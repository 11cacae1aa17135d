-- KEYS: one container (the queue LIST or a status ZSET)
-- ARGV: msg_prefix, 'list' | 'zset', batch
-- Drop up to `batch` ids from the container and their records. Reply: the dropped ids.
local batch = tonumber(ARGV[3])
local ids
if ARGV[2] == 'list' then
  ids = redis.call('LRANGE', KEYS[1], 0, batch - 1)
  redis.call('LTRIM', KEYS[1], batch, -1)
else
  ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
  if #ids > 0 then
    redis.call('ZREM', KEYS[1], unpack(ids))
  end
end
for i = 1, #ids do
  redis.call('DEL', ARGV[1] .. ids[i])
end
return ids
