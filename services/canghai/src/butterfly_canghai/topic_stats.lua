-- KEYS: one topic's queue, delayed, started, finished, failed, workers, prios, limits
-- (one hash tag)
-- ARGV: alive_after_ms (a consumer heartbeat at or after it is alive)
-- Reply: {queued, delayed, started, finished, failed, live consumers, max_running, rate,
-- window_ms} ('' for a limit that is off); reads only. The limits ride along so the
-- queues list marks limited topics without another round trip.
-- queued counts every priority's list: `queue` (priority 0) and `queue:<p>` for each p
-- in `prios`, and each concurrency group's ZSET `g:<group>` for each group in the ring
-- `groups` (see butterfly_common.mq.keys).
local queued = redis.call('LLEN', KEYS[1])
for _, p in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  queued = queued + redis.call('LLEN', KEYS[1] .. ':' .. p)
end
local base = string.sub(KEYS[1], 1, #KEYS[1] - #'queue')
for _, g in ipairs(redis.call('LRANGE', base .. 'groups', 0, -1)) do
  queued = queued + redis.call('ZCARD', base .. 'g:' .. g)
end
local lim = redis.call('HMGET', KEYS[8], 'max_running', 'rate', 'window')
return {queued, redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('ZCOUNT', KEYS[6], ARGV[1], '+inf'),
  lim[1] or '', lim[2] or '', lim[3] or ''}
