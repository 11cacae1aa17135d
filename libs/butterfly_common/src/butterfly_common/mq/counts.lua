-- KEYS: queue, delayed, started, finished, failed, prios
-- Reply: their sizes (queued: every priority's list), one consistent snapshot.
local queued = 0
for _, ready in ipairs(ready_lists(KEYS[1], KEYS[6])) do
  queued = queued + redis.call('LLEN', ready[1])
end
local base, groups = ready_groups(KEYS[1])
for i = 1, #groups do
  queued = queued + redis.call('ZCARD', base .. 'g:' .. groups[i])
end
return {queued, redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5])}
