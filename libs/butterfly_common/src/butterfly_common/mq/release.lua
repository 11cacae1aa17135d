-- KEYS: queue, started, prios
-- ARGV: msg_prefix, id1, token1, id2, token2, ...
-- Hand back claimed-but-unstarted ids to the FRONT of their priority's list in their
-- original order, without counting the attempt. Fenced per id. Reply: how many were
-- handed back.
local prefix = ARGV[1]
local n = 0
for i = #ARGV - 1, 2, -2 do
  local id = ARGV[i]
  local key = prefix .. id
  if fenced(key, ARGV[i + 1]) then
    local r = redis.call('HMGET', key, 'priority', 'group')
    if redis.call('ZREM', KEYS[2], id) == 1 then
      group_left(topic_base(KEYS[2]), r[2])
    end
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HSET', key, 'status', 'queued', 'worker', '', 'started_at', '')
    enqueue(KEYS[1], KEYS[3], tonumber(r[1]) or 0, id, true, r[2])
    n = n + 1
  end
end
return n
