-- KEYS: queue, started
-- ARGV: msg_prefix, id1, token1, id2, token2, ...
-- Hand back claimed-but-unstarted ids to the FRONT of the queue in their original order,
-- without counting the attempt. Fenced per id. Reply: how many were handed back.
local prefix = ARGV[1]
local n = 0
for i = #ARGV - 1, 2, -2 do
  local id = ARGV[i]
  local key = prefix .. id
  if fenced(key, ARGV[i + 1]) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HSET', key, 'status', 'queued', 'worker', '', 'started_at', '')
    redis.call('LPUSH', KEYS[1], id)
    n = n + 1
  end
end
return n
