-- KEYS: one topic's queue, delayed, started, finished, failed, workers (one hash tag)
-- ARGV: alive_after_ms (a consumer heartbeat at or after it is alive)
-- Reply: {queued, delayed, started, finished, failed, live consumers}; reads only.
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('ZCOUNT', KEYS[6], ARGV[1], '+inf')}
