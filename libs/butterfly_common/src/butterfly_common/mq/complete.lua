-- KEYS: started, finished, msg
-- ARGV: id, token, result_json, cost
-- Reply: 1 done | 0 ignored (no longer started under this token: reaped, released, deleted)
if not fenced(KEYS[3], ARGV[2]) then
  return 0
end
local r = redis.call('HMGET', KEYS[3], 'result_ttl', 'dedup_ref', 'group')
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and r[3] and r[3] ~= '' then
  group_left(topic_base(KEYS[1]), r[3])
end
local ttl = tonumber(r[1]) or 0
release_dedup(r[2], ARGV[1])
if ttl <= 0 then
  redis.call('DEL', KEYS[3])
  return 1
end
redis.call('HSET', KEYS[3], 'status', 'finished', 'ended_at', NOW, 'result', ARGV[3],
  'cost', ARGV[4])
redis.call('ZADD', KEYS[2], NOW + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
