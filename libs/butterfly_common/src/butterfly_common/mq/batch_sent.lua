-- KEYS: record
-- ARGV: kind ('success' | 'complete')
-- The callback of `kind` was published (its id is derived from the batch: a second
-- publish of it is a no-op): due (1) becomes sent (2). Reply: 1 | 0 (not due).
local field = ARGV[1] .. '_fired'
if redis.call('HGET', KEYS[1], field) == '1' then
  redis.call('HSET', KEYS[1], field, 2)
  return 1
end
return 0
