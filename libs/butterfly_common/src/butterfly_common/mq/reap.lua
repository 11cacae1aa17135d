-- KEYS: queue, started, finished, failed, prios
-- ARGV: msg_prefix, limit, lost_grace, lost_kind (the error_kind of a dead-lettered one)
-- Started ids past their lease go back to the FRONT of their priority's list (oldest
-- deadline first), or to the dead letters once attempts > max_retries + lost_grace (a
-- crash loop must end).
-- Then drop finished/failed records whose expiry passed. Reply: {returned, trimmed}.
local prefix = ARGV[1]
local limit = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, limit)
local returned = 0
for i = #expired, 1, -1 do
  local id = expired[i]
  local key = prefix .. id
  redis.call('ZREM', KEYS[2], id)
  local r = redis.call('HMGET', key, 'attempts', 'max_retries', 'priority', 'group')
  if r[1] then
    returned = returned + 1
    group_left(topic_base(KEYS[2]), r[4])
    if tonumber(r[1]) > tonumber(r[2]) + grace then
      redis.call('HSET', key, 'error', 'lease expired after ' .. r[1] .. ' attempts',
        'error_kind', ARGV[4])
      bury(KEYS[4], key, id)
    else
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', NOW)
      enqueue(KEYS[1], KEYS[5], tonumber(r[3]) or 0, id, true, r[4])
    end
  end
end
local trimmed = 0
local kinds = {[3] = 'finished', [4] = 'failed'}
for k = 3, 4 do
  local old = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', NOW, 'LIMIT', 0, limit)
  if #old > 0 then
    redis.call('ZREM', KEYS[k], unpack(old))
    for j = 1, #old do
      local key = prefix .. old[j]
      -- the id may have been published again since: only drop the record it refers to
      if redis.call('HGET', key, 'status') == kinds[k] then
        redis.call('DEL', key)
      end
    end
    trimmed = trimmed + #old
  end
end
return {returned, trimmed}
