-- KEYS[1] namespace version key, KEYS[2] cache entry
-- ARGV[1] the version seen before the database read, ARGV[2] entry, ARGV[3] ttl in ms
-- Store only while the namespace has not moved on: an entry read before a write committed
-- must never replace a newer one.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
