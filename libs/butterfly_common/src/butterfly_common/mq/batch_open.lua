-- KEYS: record, members, ended (one batch's tag)
-- ARGV: id, on_success, on_complete, data_json, ttl_ms, then the members ('<topic> <id>')
-- Opens the batch in state 'opening' (nothing is counted or reconciled until batch_end
-- with ARGV 'open' says every message is out). Reply: 1 opened | 0 it exists (a retry
-- of the same publish_batch: nothing changes).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'total', #ARGV - 5, 'on_success', ARGV[2],
  'on_complete', ARGV[3], 'data', ARGV[4], 'ttl', ttl, 'state', 'opening',
  'created_at', NOW, 'ended_at', '', 'ok', 0, 'notok', 0, 'failed', 0,
  'success_fired', 0, 'complete_fired', 0)
for i = 6, #ARGV, 500 do
  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
