-- Prepended to every script by scripts.py (which also defines FIELDS above this line).
-- Server time in epoch ms: the only clock the protocol trusts.
local _t = redis.call('TIME')
local NOW = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)

-- Append the record stored at `key` (HMGET in FIELDS order) to the flat reply `out`.
local function append_record(out, key)
  local r = redis.call('HMGET', key, unpack(FIELDS))
  for i = 1, #FIELDS do out[#out + 1] = r[i] end
end

-- True when `key` is still started under fencing token `token`.
local function fenced(key, token)
  local r = redis.call('HMGET', key, 'status', 'token')
  return r[1] == 'started' and r[2] == token
end

-- Dead-letter: status failed, kept failure_ttl ms in the `failed` zset (0 = drop at once).
local function bury(failed, key, id)
  local r = redis.call('HMGET', key, 'failure_ttl', 'dedup_ref')
  local ttl = tonumber(r[1]) or 0
  if r[2] and r[2] ~= '' and redis.call('GET', r[2]) == id then
    redis.call('DEL', r[2])  -- an until_done message has ended: its key is free
  end
  if ttl <= 0 then
    redis.call('DEL', key)
    return 'failed'
  end
  redis.call('HSET', key, 'status', 'failed', 'ended_at', NOW)
  redis.call('ZADD', failed, NOW + ttl, id)
  redis.call('PEXPIRE', key, ttl)
  return 'failed'
end

-- Priorities. Ready ids of priority 0 wait in the topic's `queue` LIST (as before
-- priorities existed); those of priority p ~= 0 in the LIST `queue .. ':' .. p`, and the
-- ZSET `prios` (score and member p) names every such list that may be non-empty. Every
-- list shares the topic's hash tag. A claim walks them highest priority first.

-- Concurrency groups (limits.py). A ready id published with a `group` g waits in the ZSET
-- `bc:{T}:g:<g>` instead of a priority list (score: claim order, priority first, then
-- FIFO from the counter `bc:{T}:gseq`), and the LIST `bc:{T}:groups` (the ring) names
-- each group whose zset exists exactly once: a claim serves the ring round-robin. The
-- HASH `bc:{T}:grun` counts each group's started ids (every script that takes a grouped
-- id out of `started` calls group_left). Ungrouped ids never touch these keys.

-- The topic's key prefix `bc:{T}:` of any of its keys (a topic has no braces).
local function topic_base(key)
  return string.match(key, '^(.-}:)')
end

-- Make `id` of `group` ready at priority `p`: behind the group's ids of that priority, or
-- ahead of them when `front`. A group that had no ready id joins the ring's tail.
local function group_enqueue(base, group, p, id, front)
  local zkey = base .. 'g:' .. group
  local seq = redis.call('INCR', base .. 'gseq')
  if front then seq = -seq end
  if redis.call('EXISTS', zkey) == 0 then
    redis.call('RPUSH', base .. 'groups', group)
  end
  -- 2^40 per priority step: exact in a double for 2^39 publishes
  redis.call('ZADD', zkey, string.format('%.0f', -p * 1099511627776 + seq), id)
end

-- Take ready `id` out of `group` (a group left with no ready id leaves the ring).
local function group_unready(base, group, id)
  local zkey = base .. 'g:' .. group
  if redis.call('ZREM', zkey, id) == 1 and redis.call('EXISTS', zkey) == 0 then
    redis.call('LREM', base .. 'groups', 1, group)
  end
end

-- A started id of `group` ('' or nil: none) left `started`: the group's slot frees.
local function group_left(base, group)
  if group and group ~= '' then
    if redis.call('HINCRBY', base .. 'grun', group, -1) <= 0 then
      redis.call('HDEL', base .. 'grun', group)
    end
  end
end

-- The groups with ready ids, in ring order (the claim's next first).
local function ready_groups(queue)
  local base = topic_base(queue)
  return base, redis.call('LRANGE', base .. 'groups', 0, -1)
end

-- Make `id` ready at priority `p`: the tail of its list, or the head when `front`; an id
-- of a `group` ('' or nil: none) goes to its group instead.
local function enqueue(queue, prios, p, id, front, group)
  if group and group ~= '' then
    group_enqueue(topic_base(queue), group, p, id, front)
    return
  end
  local list = queue
  if p ~= 0 then
    list = queue .. ':' .. p
    redis.call('ZADD', prios, p, p)
  end
  if front then
    redis.call('LPUSH', list, id)
  else
    redis.call('RPUSH', list, id)
  end
end

-- The ready lists in claim order: {list key, priority}, positive priorities (highest
-- first), then `queue` (0), then negative ones. Just {{queue, 0}} when none is used.
local function ready_lists(queue, prios)
  local ps = redis.call('ZREVRANGE', prios, 0, -1)
  local out = {}
  local zero = false
  for i = 1, #ps do
    local p = tonumber(ps[i])
    if p < 0 and not zero then
      out[#out + 1] = {queue, 0}
      zero = true
    end
    out[#out + 1] = {queue .. ':' .. ps[i], p}
  end
  if not zero then out[#out + 1] = {queue, 0} end
  return out
end

-- Forget a priority list once it is empty (keeps `prios` short and claims cheap).
local function drop_if_empty(prios, list, p)
  if p ~= 0 and redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', prios, p)
  end
end

-- Deduplication (publish.lua). A message published with dedup mode `until_done` holds the
-- key `bc:{T}:dedup:<dedup_key>` (its name stored as the record's `dedup_ref`) while it is
-- live; the script that ends or deletes it lets go of the key, if it still holds it.
local function release_dedup(ref, id)
  if ref and ref ~= '' and redis.call('GET', ref) == id then
    redis.call('DEL', ref)
  end
end

-- One publish: publish.lua's, and each message of publish_many.lua. `a` holds the
-- arguments in publish.lua's ARGV order, `msg` is the record's key, `prefix` the topic's
-- record key prefix, `dkey` the dedup key (nil without). Reply: as publish.lua.
local function publish_one(queue, delayed, workers, prios, prefix, msg, dkey, a)
  local status = redis.call('HGET', msg, 'status')
  if status then
    return {0, status}
  end
  local mode = a[16]
  local holder, replaced = false, ''
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
  if a[11] ~= '1'
      and redis.call('ZCOUNT', workers, NOW - tonumber(a[12]), '+inf') == 0 then
    return {-1, ''}
  end
  local delay = tonumber(a[4])
  local prio = tonumber(a[14])
  status = 'queued'
  local enqueued = NOW
  if delay > 0 then
    status = 'delayed'
    enqueued = ''
  end
  redis.call('HSET', msg, 'id', a[1], 'topic', a[2], 'data', a[3],
    'status', status, 'attempts', 0, 'max_retries', a[7], 'timeout', a[6],
    'result_ttl', a[8], 'failure_ttl', a[9], 'created_at', NOW,
    'enqueued_at', enqueued, 'reqid', a[10], 'token', 0, 'notify', a[13],
    'priority', prio, 'trace', a[19] or '')
  if a[20] and a[20] ~= '' then  -- an ungrouped record stays as it was before groups
    redis.call('HSET', msg, 'group', a[20])
  end
  if a[21] and a[21] ~= '' then  -- the batch it belongs to (batch.py)
    redis.call('HSET', msg, 'batch', a[21])
  end
  if delay > 0 then
    redis.call('ZADD', delayed, NOW + delay, a[1])
  else
    enqueue(queue, prios, prio, a[1], a[5] == '1', a[20])
  end
  if not dkey then
    return {1, status}
  end
  redis.call('HSET', msg, 'dedup_key', a[15], 'dedup_mode', mode)
  if replaced ~= '' then
    local old = prefix .. replaced
    local r = redis.call('HMGET', old, 'priority', 'group')
    local p = tonumber(r[1]) or 0
    local list = queue
    if p ~= 0 then list = queue .. ':' .. p end
    if redis.call('ZREM', delayed, replaced) == 0 then
      if r[2] and r[2] ~= '' then
        group_unready(topic_base(queue), r[2], replaced)
      else
        redis.call('LREM', list, -1, replaced)  -- from the tail: it was published lately
        drop_if_empty(prios, list, p)
      end
    end
    redis.call('DEL', old)
  end
  local ttl = tonumber(a[17])
  if mode == 'until_done' then
    redis.call('HSET', msg, 'dedup_ref', dkey)
  end
  if holder and mode == 'debounce' and a[18] ~= '1' then
    redis.call('SET', dkey, a[1], 'KEEPTTL')  -- the window still ends ttl after its first
  elseif ttl > 0 then
    redis.call('SET', dkey, a[1], 'PX', ttl)
  else
    redis.call('SET', dkey, a[1])
  end
  local outcome = 'new'
  if replaced ~= '' then outcome = 'replaced' end
  return {1, status, outcome, a[1], replaced}
end

-- Per-topic limits (limits.lua sets them). The HASH `bc:{T}:limits` holds `max_running`
-- (at most that many ids in `started`: its ZCARD is the fleet's running count, so every
-- script that ends, returns or drops a started message frees its slot) and `rate` claims
-- per fixed `window` (ms, aligned to the server clock: window start = NOW - NOW % window),
-- counted in `used` for the window starting at `win`. No hash: no limit.
-- Claims of the current window so far, and the window's start (0, 0 without a rate).
local function window_used(lim)
  local window = tonumber(lim[3])
  if not window then return 0, 0 end
  local start = NOW - NOW % window
  if tonumber(lim[4]) == start then return tonumber(lim[5]) or 0, start end
  return 0, start
end

-- Batches (batch.py). The record `bc:{batch:B}` counts its members' outcomes (ok, notok,
-- failed); once they add up to `total`, each callback (`success_fired`,
-- `complete_fired`) goes from 0 to 1 ("due") exactly once, and the caller that published
-- it sets 2 ("sent"). Reply: {state, ended_at, due kinds ...}.
local function batch_due(rec, members, ended)
  local r = redis.call('HMGET', rec, 'total', 'ok', 'notok', 'failed', 'state',
    'success_fired', 'complete_fired', 'on_success', 'on_complete', 'ttl', 'ended_at')
  local total, ok = tonumber(r[1]), tonumber(r[2]) or 0
  local over = ok + (tonumber(r[3]) or 0) + (tonumber(r[4]) or 0)
  local state, ended_at = r[5], r[11] or ''
  if state ~= 'opening' and over >= total then
    if ended_at == '' then
      ended_at = NOW
      if state == 'open' then state = 'ended' end
      redis.call('HSET', rec, 'state', state, 'ended_at', ended_at)
      local ttl = tonumber(r[10])
      for _, key in ipairs({rec, members, ended}) do redis.call('PEXPIRE', key, ttl) end
    end
    if r[9] ~= '' and r[7] == '0' then
      redis.call('HSET', rec, 'complete_fired', 1)
      r[7] = '1'
    end
    if r[8] ~= '' and r[6] == '0' and ok >= total and state == 'ended' then
      redis.call('HSET', rec, 'success_fired', 1)
      r[6] = '1'
    end
  end
  local out = {state, ended_at}
  if r[6] == '1' then out[#out + 1] = 'success' end
  if r[7] == '1' then out[#out + 1] = 'complete' end
  return out
end
