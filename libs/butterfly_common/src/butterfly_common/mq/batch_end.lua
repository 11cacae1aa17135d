-- KEYS: record, members, ended (one batch's tag)
-- ARGV: 'open' (the publisher: every message is out) | 'cancel' (the operator) | '',
--       then pairs: member ('<topic> <id>'), outcome ('ok' | 'notok' | 'failed')
-- Counts each member's end once (HSETNX on `ended`: a redelivered or reconciled message
-- told twice is counted once), then batch_due. Reply: batch_due's {state, ended_at, due
-- kinds ...}, {''} when the batch is gone (expired, never opened).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {''}
end
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[1] == 'open' and state == 'opening' then
  redis.call('HSET', KEYS[1], 'state', 'open')
elseif ARGV[1] == 'cancel' and (state == 'open' or state == 'opening') then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'canceled_at', NOW)
end
for i = 2, #ARGV, 2 do
  local m, o = ARGV[i], ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[2], m) == 1 and redis.call('HSETNX', KEYS[3], m, o) == 1 then
    redis.call('HINCRBY', KEYS[1], o, 1)
    redis.call('PEXPIRE', KEYS[3], redis.call('PTTL', KEYS[1]))
  end
end
return batch_due(KEYS[1], KEYS[2], KEYS[3])
