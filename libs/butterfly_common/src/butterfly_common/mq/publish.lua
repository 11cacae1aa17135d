-- KEYS: queue, delayed, workers, msg, prios
-- ARGV: id, topic, data, delay_ms, at_front, timeout, max_retries, result_ttl,
--       failure_ttl, reqid, force, heartbeat_ttl_ms, notify (topic told when it ends, or ''),
--       priority
-- Reply: {1, status} created | {0, status} id exists | {-1, ''} no live consumer
local status = redis.call('HGET', KEYS[4], 'status')
if status then
  return {0, status}
end
if ARGV[11] ~= '1'
    and redis.call('ZCOUNT', KEYS[3], NOW - tonumber(ARGV[12]), '+inf') == 0 then
  return {-1, ''}
end
local delay = tonumber(ARGV[4])
local prio = tonumber(ARGV[14])
status = 'queued'
local enqueued = NOW
if delay > 0 then
  status = 'delayed'
  enqueued = ''
end
redis.call('HSET', KEYS[4], 'id', ARGV[1], 'topic', ARGV[2], 'data', ARGV[3],
  'status', status, 'attempts', 0, 'max_retries', ARGV[7], 'timeout', ARGV[6],
  'result_ttl', ARGV[8], 'failure_ttl', ARGV[9], 'created_at', NOW,
  'enqueued_at', enqueued, 'reqid', ARGV[10], 'token', 0, 'notify', ARGV[13],
  'priority', prio)
if delay > 0 then
  redis.call('ZADD', KEYS[2], NOW + delay, ARGV[1])
else
  enqueue(KEYS[1], KEYS[5], prio, ARGV[1], ARGV[5] == '1')
end
return {1, status}
