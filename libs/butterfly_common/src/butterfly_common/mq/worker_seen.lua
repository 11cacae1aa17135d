-- KEYS: the global workers HASH
-- ARGV: worker id, JSON record missing its closing '"last_seen": <ms>}' tail
-- Store the record stamped with the server's now. Reply: now.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '"last_seen": ' .. NOW .. '}')
return NOW
