-- KEYS: queue, delayed, started, finished, failed, msg
-- ARGV: id
-- Remove a message wherever it is. Reply: 1 if its record existed.
local n = redis.call('DEL', KEYS[6])
redis.call('LREM', KEYS[1], 0, ARGV[1])
for k = 2, 5 do
  redis.call('ZREM', KEYS[k], ARGV[1])
end
return n
