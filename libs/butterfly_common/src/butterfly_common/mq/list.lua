-- KEYS: one container (the queue LIST or a status ZSET), [prios with the queue]
-- ARGV: msg_prefix, 'list' | 'zset', start, stop, newest_first
-- Reply: {total, record, record, ...} (records flat, FIELDS order). The queue's oldest
-- first is claim order (highest priority first, FIFO within one), newest first its exact
-- reverse (ids of concurrency groups after the ungrouped, group by group in ring
-- order); in a zset newest = highest score (latest due / deadline / expiry).
local start, stop = tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = ARGV[5] == '1'
local total, ids
if ARGV[2] == 'list' then
  local lists = ready_lists(KEYS[1], KEYS[2])
  local nlists = #lists
  local base, groups = ready_groups(KEYS[1])  -- after the lists: each group's zset
  for g = 1, #groups do lists[#lists + 1] = {base .. 'g:' .. groups[g], 0} end
  local lens = {}
  total = 0
  for i = 1, #lists do
    if i > nlists then
      lens[i] = redis.call('ZCARD', lists[i][1])
    else
      lens[i] = redis.call('LLEN', lists[i][1])
    end
    total = total + lens[i]
  end
  local function range(i, a, b)
    if i > nlists then return redis.call('ZRANGE', lists[i][1], a, b) end
    return redis.call('LRANGE', lists[i][1], a, b)
  end
  ids = {}
  local pos = 0  -- index, in the order asked, of the current list's first id
  for j = 1, #lists do
    local i = j
    if newest then i = #lists + 1 - j end
    local n = lens[i]
    local lo, hi = math.max(start - pos, 0), math.min(stop - pos, n - 1)
    if lo <= hi then
      if newest then
        local r = range(i, -hi - 1, -lo - 1)
        for x = #r, 1, -1 do ids[#ids + 1] = r[x] end
      else
        local r = range(i, lo, hi)
        for x = 1, #r do ids[#ids + 1] = r[x] end
      end
    end
    pos = pos + n
    if pos > stop then break end
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
