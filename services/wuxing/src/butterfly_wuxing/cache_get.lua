-- KEYS[1] namespace version key, KEYS[2] cache entry (same {namespace} hash tag)
-- The version and the entry in one round trip, read at the same instant.
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
