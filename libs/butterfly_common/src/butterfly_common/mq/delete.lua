-- KEYS: queue, delayed, started, finished, failed, msg, prios
-- ARGV: id
-- Remove a message wherever it is. Reply: 1 if its record existed.
local r = redis.call('HMGET', KEYS[6], 'priority', 'dedup_ref', 'group')
local p = tonumber(r[1]) or 0
release_dedup(r[2], ARGV[1])
local n = redis.call('DEL', KEYS[6])
if r[3] and r[3] ~= '' then
  group_unready(topic_base(KEYS[1]), r[3], ARGV[1])
else
  local list = KEYS[1]
  if p ~= 0 then list = KEYS[1] .. ':' .. p end
  redis.call('LREM', list, 0, ARGV[1])
  drop_if_empty(KEYS[7], list, p)
end
for k = 2, 5 do
  if redis.call('ZREM', KEYS[k], ARGV[1]) == 1 and k == 3 then
    group_left(topic_base(KEYS[1]), r[3])
  end
end
return n
