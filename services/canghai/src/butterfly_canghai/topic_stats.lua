-- KEYS: one topic's queue, delayed, started, finished, failed, workers, prios (one hash tag)
-- ARGV: alive_after_ms (a consumer heartbeat at or after it is alive)
-- Reply: {queued, delayed, started, finished, failed, live consumers}; reads only.
-- queued counts every priority's list: `queue` (priority 0) and `queue:<p>` for each p
-- in `prios` (see butterfly_common.mq.keys).
local queued = redis.call('LLEN', KEYS[1])
for _, p in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  queued = queued + redis.call('LLEN', KEYS[1] .. ':' .. p)
end
return {queued, redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('ZCOUNT', KEYS[6], ARGV[1], '+inf')}
