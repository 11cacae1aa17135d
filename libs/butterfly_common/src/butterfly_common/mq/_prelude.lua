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

-- The priority stored in record `key` (0 when unset: records older than priorities).
local function priority_of(key)
  return tonumber(redis.call('HGET', key, 'priority')) or 0
end

-- Make `id` ready at priority `p`: the tail of its list, or the head when `front`.
local function enqueue(queue, prios, p, id, front)
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
