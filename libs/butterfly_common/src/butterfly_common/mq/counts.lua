-- KEYS: queue, delayed, started, finished, failed
-- Reply: their sizes, one consistent snapshot.
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5])}
