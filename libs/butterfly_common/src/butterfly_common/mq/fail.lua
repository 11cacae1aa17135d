-- KEYS: started, delayed, failed, msg
-- ARGV: id, token, error, result_json, cost, backoff_ms (< 0: dead-letter now), error_kind
-- Reply: 'delayed' (retry scheduled) | 'failed' (dead letter) | '' ignored (fenced out)
if not fenced(KEYS[4], ARGV[2]) then
  return ''
end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  group_left(topic_base(KEYS[1]), redis.call('HGET', KEYS[4], 'group'))
end
redis.call('HSET', KEYS[4], 'ended_at', NOW, 'error', ARGV[3], 'error_kind', ARGV[7],
  'result', ARGV[4], 'cost', ARGV[5])
local backoff = tonumber(ARGV[6])
if backoff >= 0 then
  redis.call('HSET', KEYS[4], 'status', 'delayed')
  redis.call('ZADD', KEYS[2], NOW + backoff, ARGV[1])
  return 'delayed'
end
return bury(KEYS[3], KEYS[4], ARGV[1])
