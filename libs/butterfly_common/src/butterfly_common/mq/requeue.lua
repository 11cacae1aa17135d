-- KEYS: queue, failed, prios
-- ARGV: msg_prefix, at_front, limit, [id]
-- Move one dead letter (id given) or up to `limit` of them back to the queue with fresh
-- attempts. Reply: {requeued, ids looked at}.
local prefix = ARGV[1]
local ids
if ARGV[4] then
  ids = {ARGV[4]}
else
  ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
end
local n = 0
for i = 1, #ids do
  local id = ids[i]
  local key = prefix .. id
  if redis.call('ZREM', KEYS[2], id) == 1 and redis.call('EXISTS', key) == 1 then
    redis.call('PERSIST', key)
    redis.call('HSET', key, 'status', 'queued', 'attempts', 0, 'enqueued_at', NOW,
      'worker', '', 'started_at', '', 'ended_at', '')
    local r = redis.call('HMGET', key, 'priority', 'dedup_ref', 'group')
    enqueue(KEYS[1], KEYS[3], tonumber(r[1]) or 0, id, ARGV[2] == '1', r[3])
    if r[2] and r[2] ~= '' then  -- live again: an until_done key free since takes it back
      redis.call('SET', r[2], id, 'NX')
    end
    n = n + 1
  end
end
return {n, #ids}
