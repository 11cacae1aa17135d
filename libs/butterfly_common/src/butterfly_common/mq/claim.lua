-- KEYS: queue, delayed, started, prios
-- ARGV: count, worker, lease_ms, msg_prefix, promote_limit, settle_grace_ms
-- Promote due delayed ids to the tail of their priority's list, then pop up to `count`
-- ids, highest priority first (FIFO within one), and mark them started. Reply: the
-- claimed records, flat (FIELDS order).
local prefix = ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  local plain = {}
  for i = 1, #due do
    local key = prefix .. due[i]
    redis.call('HSET', key, 'status', 'queued', 'enqueued_at', NOW)
    local p = priority_of(key)
    if p == 0 then
      plain[#plain + 1] = due[i]
    else
      enqueue(KEYS[1], KEYS[4], p, due[i], false)
    end
  end
  if #plain > 0 then
    redis.call('RPUSH', KEYS[1], unpack(plain))
  end
end
local out = {}
local want = tonumber(ARGV[1])
local ids = {}
for _, ready in ipairs(ready_lists(KEYS[1], KEYS[4])) do
  local got = redis.call('LPOP', ready[1], want - #ids)
  if got then
    for i = 1, #got do ids[#ids + 1] = got[i] end
    drop_if_empty(KEYS[4], ready[1], ready[2])
  end
  if #ids >= want then break end
end
local lease = tonumber(ARGV[3])
local grace = tonumber(ARGV[6])
for i = 1, #ids do
  local id = ids[i]
  local key = prefix .. id
  local timeout = tonumber(redis.call('HGET', key, 'timeout'))
  if timeout then  -- a vanished record (deleted, expired) is dropped
    redis.call('ZADD', KEYS[3], NOW + math.min(timeout + grace, lease), id)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HINCRBY', key, 'token', 1)
    redis.call('HSET', key, 'status', 'started', 'started_at', NOW, 'worker', ARGV[2])
    -- a new attempt starts from nothing done, and has not failed (yet)
    redis.call('HDEL', key, 'progress', 'error_kind')
    append_record(out, key)
  end
end
return out
