-- KEYS: queue, delayed, started, prios, limits
-- ARGV: count, worker, lease_ms, msg_prefix, promote_limit, settle_grace_ms
-- Promote due delayed ids to the tail of their priority's list, then pop up to `count`
-- ids, highest priority first (FIFO within one), and mark them started. A topic with
-- limits (see window_used) pops no more than they allow: a held-back id stays queued.
-- Then ids of concurrency groups, round-robin between the groups (see below).
-- Reply: the claimed records, flat (FIELDS order).
local prefix = ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  local plain = {}
  for i = 1, #due do
    local key = prefix .. due[i]
    redis.call('HSET', key, 'status', 'queued', 'enqueued_at', NOW)
    local r = redis.call('HMGET', key, 'priority', 'group')
    local p = tonumber(r[1]) or 0
    if p == 0 and not (r[2] and r[2] ~= '') then
      plain[#plain + 1] = due[i]
    else
      enqueue(KEYS[1], KEYS[4], p, due[i], false, r[2])
    end
  end
  if #plain > 0 then
    redis.call('RPUSH', KEYS[1], unpack(plain))
  end
end
local out = {}
local asked = tonumber(ARGV[1])
local want = asked
-- one command on a missing key when the topic has no limits
local lim = redis.call('HMGET', KEYS[5], 'max_running', 'rate', 'window', 'win', 'used',
  'group_max_running', 'group_caps')
local used, win = 0, 0
if lim[1] then
  want = math.min(want, tonumber(lim[1]) - redis.call('ZCARD', KEYS[3]))
end
if lim[2] then
  used, win = window_used(lim)
  want = math.min(want, tonumber(lim[2]) - used)
end
local ids = {}
local lists = ready_lists(KEYS[1], KEYS[4])
if want > 0 then
  for _, ready in ipairs(lists) do
    local got = redis.call('LPOP', ready[1], want - #ids)
    if got then
      for i = 1, #got do ids[#ids + 1] = got[i] end
      drop_if_empty(KEYS[4], ready[1], ready[2])
    end
    if #ids >= want then break end
  end
end
-- Grouped ids (see group_enqueue) only once the ungrouped are exhausted: one LLEN of a
-- missing key when the topic has none, nothing when ungrouped ids filled the claim. The
-- ring is served round-robin, one id per turn; a group at its max_running (per-group
-- `group:<g>` of the limits, else `group_max_running`) is passed over, its id not
-- claimed; a whole turn of the ring with nothing to take ends the claim.
local grouped = {}  -- index in ids -> its group
local base = nil
local group_held = false
if want > #ids then
  base = topic_base(KEYS[1])
  local ring, grun = base .. 'groups', base .. 'grun'
  local gcap = tonumber(lim[6])
  local idle, n = 0, redis.call('LLEN', ring)
  if n > 0 and (gcap or lim[7]) and redis.call('ZCARD', KEYS[3]) == 0 then
    redis.call('DEL', grun)  -- nothing runs: no count can be owed (self-healing)
  end
  while #ids < want and idle < n do
    local g = redis.call('LPOP', ring)  -- to the tail: the next claim starts after it
    redis.call('RPUSH', ring, g)
    local cap = gcap
    if lim[7] then cap = tonumber(redis.call('HGET', KEYS[5], 'group:' .. g)) or gcap end
    local zkey = base .. 'g:' .. g
    if cap and (tonumber(redis.call('HGET', grun, g)) or 0) >= cap then
      idle = idle + 1
      group_held = true
    else
      local got = redis.call('ZPOPMIN', zkey)
      if got[1] then
        ids[#ids + 1] = got[1]
        grouped[#ids] = g
        redis.call('HINCRBY', grun, g, 1)
        idle = 0
      end
      if redis.call('EXISTS', zkey) == 0 then
        redis.call('RPOP', ring)  -- moved to the tail above: no ready id left
        n = n - 1
      end
    end
  end
  if group_held then  -- a claim a group's limit cut short (its ids stay ready)
    redis.call('HINCRBY', KEYS[5], 'group_held', 1)
    redis.call('HSET', KEYS[5], 'group_held_at', NOW)
  end
end
local lease = tonumber(ARGV[3])
local grace = tonumber(ARGV[6])
local claimed = 0
for i = 1, #ids do
  local id = ids[i]
  local key = prefix .. id
  local timeout = tonumber(redis.call('HGET', key, 'timeout'))
  if timeout then  -- a vanished record (deleted, expired) is dropped
    redis.call('ZADD', KEYS[3], NOW + math.min(timeout + grace, lease), id)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HINCRBY', key, 'token', 1)
    redis.call('HSET', key, 'status', 'started', 'started_at', NOW, 'worker', ARGV[2])
    -- a new attempt starts from nothing done, and has not failed (yet)
    redis.call('HDEL', key, 'progress', 'error_kind')
    append_record(out, key)
    claimed = claimed + 1
  elseif grouped[i] then
    group_left(base, grouped[i])
  end
end
if want < asked then  -- a limit cut this claim: was anything ready held back?
  local held = false
  for _, ready in ipairs(lists) do
    if redis.call('LLEN', ready[1]) > 0 then
      held = true
      break
    end
  end
  if not held and redis.call('EXISTS', topic_base(KEYS[1]) .. 'groups') == 1 then
    held = true
  end
  if held then
    redis.call('HINCRBY', KEYS[5], 'held', 1)
    redis.call('HSET', KEYS[5], 'held_at', NOW)
  end
end
if lim[2] and claimed > 0 then
  redis.call('HSET', KEYS[5], 'win', win, 'used', used + claimed)
end
return out
