-- KEYS: queue, delayed, started
-- ARGV: count, worker, lease_ms, msg_prefix, promote_limit
-- Promote due delayed ids to the tail of the queue, then pop up to `count` ids and mark
-- them started. Reply: the claimed records, flat (FIELDS order).
local prefix = ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  redis.call('RPUSH', KEYS[1], unpack(due))
  for i = 1, #due do
    redis.call('HSET', prefix .. due[i], 'status', 'queued', 'enqueued_at', NOW)
  end
end
local out = {}
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not ids then
  return out
end
local lease = tonumber(ARGV[3])
for i = 1, #ids do
  local id = ids[i]
  local key = prefix .. id
  local timeout = tonumber(redis.call('HGET', key, 'timeout'))
  if timeout then  -- a vanished record (deleted, expired) is dropped
    redis.call('ZADD', KEYS[3], NOW + math.min(timeout, lease), id)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HINCRBY', key, 'token', 1)
    redis.call('HSET', key, 'status', 'started', 'started_at', NOW, 'worker', ARGV[2])
    -- a new attempt starts from nothing done, and has not failed (yet)
    redis.call('HDEL', key, 'progress', 'error_kind')
    append_record(out, key)
  end
end
return out
