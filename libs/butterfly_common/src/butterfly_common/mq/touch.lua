-- KEYS: a ZSET (a topic's workers, or the topic registry)
-- ARGV: member
-- Score the member with the server's now (ms). Reply: now.
redis.call('ZADD', KEYS[1], NOW, ARGV[1])
return NOW
