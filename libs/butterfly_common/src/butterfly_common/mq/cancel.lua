-- KEYS: queue, delayed, failed, msg, prios (one topic)
-- ARGV: id, error, error_kind
-- Take one queued or delayed message out before it runs (again): a dead letter with
-- `error_kind` (canceled), as a bulk cancel does. Reply: 'failed' | '' (not queued or
-- delayed: started, ended or gone, left alone).
local r = redis.call('HMGET', KEYS[4], 'status', 'priority', 'group')
if r[1] == 'delayed' then
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif r[1] == 'queued' then
  if r[3] and r[3] ~= '' then
    group_unready(topic_base(KEYS[1]), r[3], ARGV[1])
  else
    local p = tonumber(r[2]) or 0
    local list = KEYS[1]
    if p ~= 0 then list = KEYS[1] .. ':' .. p end
    redis.call('LREM', list, 1, ARGV[1])
    drop_if_empty(KEYS[5], list, p)
  end
else
  return ''
end
redis.call('HSET', KEYS[4], 'error', ARGV[2], 'error_kind', ARGV[3])
return bury(KEYS[3], KEYS[4], ARGV[1])
