-- KEYS: queue, delayed, started, prios, limits
-- ARGV: count, worker, lease_ms, msg_prefix, promote_limit, settle_grace_ms
-- Promote due delayed ids to the tail of their priority's list, then pop up to `count`
-- ids, highest priority first (FIFO within one), and mark them started. A topic with
-- limits (see window_used) pops no more than they allow: a held-back id stays queued.
-- Reply: the claimed records, flat (FIELDS order).
local prefix = ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  local plain = {}
  for i = 1, #due do
    local key = prefix .. due[i]
    redis.call('HSET', key, 'status', 'queued', 'enqueued_at', NOW)
    local p = priority_of(key)
    if p == 0 then
      plain[#plain + 1] = due[i]
    else
      enqueue(KEYS[1], KEYS[4], p, due[i], false)
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
local lim = redis.call('HMGET', KEYS[5], 'max_running', 'rate', 'window', 'win', 'used')
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
  end
end
if want < asked then  -- a limit cut this claim: was anything ready held back?
  for _, ready in ipairs(lists) do
    if redis.call('LLEN', ready[1]) > 0 then
      redis.call('HINCRBY', KEYS[5], 'held', 1)
      redis.call('HSET', KEYS[5], 'held_at', NOW)
      break
    end
  end
end
if lim[2] and claimed > 0 then
  redis.call('HSET', KEYS[5], 'win', win, 'used', used + claimed)
end
return out
