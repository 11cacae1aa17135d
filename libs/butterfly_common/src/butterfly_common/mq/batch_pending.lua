-- KEYS: record, members, ended (one batch's tag)
-- ARGV: none
-- Reply: {state, the members not counted as ended yet ...}; {''} when the batch is gone.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {''}
end
local out = {state}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[3], m) == 0 then out[#out + 1] = m end
end
return out
