-- KEYS: queue, delayed, workers, msg, prios, [dedup: bc:{T}:dedup:<dedup_key>]
-- ARGV: id, topic, data, delay_ms, at_front, timeout, max_retries, result_ttl,
--       failure_ttl, reqid, force, heartbeat_ttl_ms, notify (topic told when it ends, or ''),
--       priority, dedup_key, dedup_mode (until_done | throttle | debounce), dedup_ttl_ms
--       (0: none), dedup_extend ('1': a debounce restarts the ttl)
-- Reply: {1, status} created | {0, status} id exists | {-1, ''} no live consumer; with a
-- dedup key {code, status, outcome, standing id, replaced id or ''}, outcome one of
-- new | replaced (created) | duplicate | throttled (nothing created: the standing
-- message's status).
local status = redis.call('HGET', KEYS[4], 'status')
if status then
  return {0, status}
end
local dkey, mode = KEYS[6], ARGV[16]
local holder, replaced = false, ''
local prefix = string.sub(KEYS[4], 1, #KEYS[4] - #ARGV[1])
if dkey then
  holder = redis.call('GET', dkey)
  if holder then
    local held = redis.call('HGET', prefix .. holder, 'status')
    if mode == 'throttle' then  -- the key lives one ttl: one message per window
      return {0, held or '', 'throttled', holder}
    end
    if mode == 'until_done' and (held == 'queued' or held == 'delayed'
        or held == 'started') then
      return {0, held, 'duplicate', holder}
    end
    if mode == 'debounce' and (held == 'queued' or held == 'delayed') then
      replaced = holder  -- not started yet: the latest publish takes its place
    end
  end
end
if ARGV[11] ~= '1'
    and redis.call('ZCOUNT', KEYS[3], NOW - tonumber(ARGV[12]), '+inf') == 0 then
  return {-1, ''}
end
local delay = tonumber(ARGV[4])
local prio = tonumber(ARGV[14])
status = 'queued'
local enqueued = NOW
if delay > 0 then
  status = 'delayed'
  enqueued = ''
end
redis.call('HSET', KEYS[4], 'id', ARGV[1], 'topic', ARGV[2], 'data', ARGV[3],
  'status', status, 'attempts', 0, 'max_retries', ARGV[7], 'timeout', ARGV[6],
  'result_ttl', ARGV[8], 'failure_ttl', ARGV[9], 'created_at', NOW,
  'enqueued_at', enqueued, 'reqid', ARGV[10], 'token', 0, 'notify', ARGV[13],
  'priority', prio)
if delay > 0 then
  redis.call('ZADD', KEYS[2], NOW + delay, ARGV[1])
else
  enqueue(KEYS[1], KEYS[5], prio, ARGV[1], ARGV[5] == '1')
end
if not dkey then
  return {1, status}
end
redis.call('HSET', KEYS[4], 'dedup_key', ARGV[15], 'dedup_mode', mode)
if replaced ~= '' then
  local old = prefix .. replaced
  local p = priority_of(old)
  local list = KEYS[1]
  if p ~= 0 then list = KEYS[1] .. ':' .. p end
  if redis.call('ZREM', KEYS[2], replaced) == 0 then
    redis.call('LREM', list, -1, replaced)  -- from the tail: it was published lately
    drop_if_empty(KEYS[5], list, p)
  end
  redis.call('DEL', old)
end
local ttl = tonumber(ARGV[17])
if mode == 'until_done' then
  redis.call('HSET', KEYS[4], 'dedup_ref', dkey)
end
if holder and mode == 'debounce' and ARGV[18] ~= '1' then
  redis.call('SET', dkey, ARGV[1], 'KEEPTTL')  -- the window still ends ttl after its first
elseif ttl > 0 then
  redis.call('SET', dkey, ARGV[1], 'PX', ttl)
else
  redis.call('SET', dkey, ARGV[1])
end
local outcome = 'new'
if replaced ~= '' then outcome = 'replaced' end
return {1, status, outcome, ARGV[1], replaced}
