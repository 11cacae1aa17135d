-- KEYS: one container (the queue LIST or a status ZSET)
-- ARGV: msg_prefix, 'list' | 'zset', start, stop, newest_first
-- Reply: {total, record, record, ...} (records flat, FIELDS order). Newest = list tail,
-- or highest score (latest due / deadline / expiry) in a zset.
local start, stop = tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = ARGV[5] == '1'
local total, ids
if ARGV[2] == 'list' then
  total = redis.call('LLEN', KEYS[1])
  if newest then
    local r = redis.call('LRANGE', KEYS[1], -stop - 1, -start - 1)
    ids = {}
    for i = #r, 1, -1 do ids[#ids + 1] = r[i] end
  else
    ids = redis.call('LRANGE', KEYS[1], start, stop)
  end
else
  total = redis.call('ZCARD', KEYS[1])
  if newest then
    ids = redis.call('ZREVRANGE', KEYS[1], start, stop)
  else
    ids = redis.call('ZRANGE', KEYS[1], start, stop)
  end
end
local out = {total}
for i = 1, #ids do
  append_record(out, ARGV[1] .. ids[i])
end
return out
