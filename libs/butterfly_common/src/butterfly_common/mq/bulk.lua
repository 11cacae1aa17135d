-- KEYS: queue, prios, delayed, started, finished, failed (one topic)
-- ARGV: msg_prefix, status, action ('count' | 'requeue' | 'delete' | 'cancel'), step,
--       error substring, since_ms, until_ms, stat ('' = no such condition), at_front,
--       cancel error text, cancel error_kind, run id (unique per bulk run),
--       cursor: t0, bound, priority, anchor id, anchor score ('' on the first step)
-- One bounded step of a bulk action (bulk.py drives the steps): visit up to `step` ids
-- of `status`'s container (queued: every priority's list in claim order, then each
-- concurrency group's ready ids, groups by name) after the cursor, keep those whose record matches the filter,
-- act on them (nothing for 'count'). The cursor is the last visited id that is still in
-- the container (an acted id left it), so an id is visited once whatever the steps
-- remove; ids that joined after the first step (t0) are not matched, and a zset is not
-- visited past its highest score at t0, and a record requeued by this run (its `bulk`
-- field is the run id) is not matched again when it fails again meanwhile. Reply: {scanned, matched, acted, done (1|0), t0, bound, priority, anchor,
-- anchor score, then the acted ids ('delete'), or id, failure_ttl pairs ('cancel')}.
local prefix, status, action = ARGV[1], ARGV[2], ARGV[3]
local step = tonumber(ARGV[4])
local want_error = ARGV[5]
local since, till = tonumber(ARGV[6]), tonumber(ARGV[7])
local want_stat = ARGV[8]
local run = ARGV[12]
local t0 = tonumber(ARGV[13]) or NOW
local bound = ARGV[14]
local cur_p = tonumber(ARGV[15]) or 1000
local anchor, anchor_score = ARGV[16], ARGV[17]
local GROUPS = -1000  -- the cursor's priority once the priority lists are done
local TOMB = ' bulk '  -- never an id (ids have no spaces): marks list slots to drop
local time_field = 'ended_at'
if status == 'queued' or status == 'delayed' then
  time_field = 'created_at'
elseif status == 'started' then
  time_field = 'started_at'
end
local acting = action ~= 'count'
local zsets = {delayed = KEYS[3], started = KEYS[4], finished = KEYS[5], failed = KEYS[6]}

-- The record of `id` matches the filter (and still is in `status`, joined before t0).
local function matches(key)
  local r = redis.call('HMGET', key, 'status', 'error', time_field, 'bulk')
  if r[1] ~= status or r[4] == run then return false end
  local t = tonumber(r[3])
  if t and t > t0 then return false end
  if since and not (t and t >= since) then return false end
  if till and not (t and t <= till) then return false end
  if want_error ~= '' and not string.find(r[2] or '', want_error, 1, true) then
    return false
  end
  if want_stat ~= '' then
    local ok, res = pcall(cjson.decode, redis.call('HGET', key, 'result') or '')
    if not ok or type(res) ~= 'table' or res.stat == nil
        or tostring(res.stat) ~= want_stat then
      return false
    end
  end
  return true
end

local out_ids = {}

-- Act on a matching id, already out of its container (removed by the caller).
local function act(key, id)
  if action == 'requeue' then
    redis.call('PERSIST', key)
    redis.call('HSET', key, 'status', 'queued', 'attempts', 0, 'enqueued_at', NOW,
      'worker', '', 'started_at', '', 'ended_at', '', 'bulk', run)
    local r = redis.call('HMGET', key, 'priority', 'dedup_ref', 'group')
    enqueue(KEYS[1], KEYS[2], tonumber(r[1]) or 0, id, ARGV[9] == '1', r[3])
    if r[2] and r[2] ~= '' then  -- live again: an until_done key free since takes it back
      redis.call('SET', r[2], id, 'NX')
    end
  elseif action == 'delete' then
    local r = redis.call('HMGET', key, 'dedup_ref', 'group')
    if status == 'started' then group_left(topic_base(KEYS[1]), r[2]) end
    release_dedup(r[1], id)
    redis.call('DEL', key)
    out_ids[#out_ids + 1] = id
  else  -- cancel: a dead letter that never ran (again)
    local ttl = redis.call('HGET', key, 'failure_ttl') or '0'
    redis.call('HSET', key, 'error', ARGV[10], 'error_kind', ARGV[11])
    bury(KEYS[6], key, id)
    out_ids[#out_ids + 1] = id
    out_ids[#out_ids + 1] = ttl
  end
end

local scanned, matched = 0, 0
local done = 0
if status == 'queued' then
  local lists = ready_lists(KEYS[1], KEYS[2])  -- claim order: priority descending
  local budget = step
  for _, ready in ipairs(lists) do
    local list, p = ready[1], ready[2]
    if p <= cur_p and budget > 0 then
      local start = 0
      if p == cur_p and anchor ~= '' then
        -- ids before the anchor were visited, or claimed since (claims pop the head)
        local at = redis.call('LPOS', list, anchor)
        if at then start = at + 1 end
      elseif p < cur_p then
        anchor = ''
      end
      cur_p = p
      local ids = redis.call('LRANGE', list, start, start + budget - 1)
      local hit = 0
      for i = 1, #ids do
        local id = ids[i]
        if matches(prefix .. id) then
          matched = matched + 1
          if acting then
            redis.call('LSET', list, start + i - 1, TOMB)
            act(prefix .. id, id)
            hit = hit + 1
          else
            anchor = id
          end
        else
          anchor = id
        end
      end
      if hit > 0 then
        redis.call('LREM', list, 0, TOMB)
        drop_if_empty(KEYS[2], list, p)
      end
      scanned = scanned + #ids
      budget = budget - #ids
    end
  end
  -- then each concurrency group's ready ids, groups by name (the ring's order moves with
  -- every claim); the cursor is priority GROUPS, the group (in `anchor_score`) and anchor
  if budget > 0 then
    local base = topic_base(KEYS[1])
    local groups = redis.call('LRANGE', base .. 'groups', 0, -1)
    table.sort(groups)
    local cur_g = ''
    if cur_p == GROUPS then cur_g = anchor_score else anchor = '' end
    for _, g in ipairs(groups) do
      if budget > 0 and g >= cur_g then
        local zkey = base .. 'g:' .. g
        local start = 0
        if g == cur_g and anchor ~= '' then
          local at = redis.call('ZRANK', zkey, anchor)  -- gone: claimed since, start over
          if at then start = at + 1 end
        else
          anchor = ''
        end
        cur_p, cur_g, anchor_score = GROUPS, g, g
        local ids = redis.call('ZRANGE', zkey, start, start + budget - 1)
        for i = 1, #ids do
          local id = ids[i]
          if matches(prefix .. id) then
            matched = matched + 1
            if acting then
              redis.call('ZREM', zkey, id)
              act(prefix .. id, id)
            else
              anchor = id
            end
          else
            anchor = id
          end
        end
        if acting and redis.call('EXISTS', zkey) == 0 then
          redis.call('LREM', base .. 'groups', 1, g)
        end
        scanned = scanned + #ids
        budget = budget - #ids
      end
    end
  end
  if budget > 0 then done = 1 end
else
  local zset = zsets[status]
  if bound == '' then
    local top = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
    bound = top[2] or ''
  end
  local limit = tonumber(bound)
  local start = 0
  if anchor ~= '' then
    local rank = redis.call('ZRANK', zset, anchor)
    if rank then
      start = rank + 1
    else  -- removed meanwhile by someone else: resume at its score
      start = redis.call('ZCOUNT', zset, '-inf', '(' .. anchor_score)
    end
  end
  local page = {}
  if limit then  -- no bound: the zset was empty at t0
    page = redis.call('ZRANGE', zset, start, start + step - 1, 'WITHSCORES')
  end
  for i = 1, #page, 2 do
    local id, score = page[i], page[i + 1]
    if tonumber(score) > limit then
      done = 1
      break
    end
    scanned = scanned + 1
    local key = prefix .. id
    if matches(key) then
      matched = matched + 1
      if acting then
        redis.call('ZREM', zset, id)
        act(key, id)
      else
        anchor, anchor_score = id, score
      end
    else
      anchor, anchor_score = id, score
    end
  end
  if #page < 2 * step then done = 1 end
end
local acted = 0
if acting then acted = matched end
local out = {scanned, matched, acted, done, t0, bound, cur_p, anchor, anchor_score}
for i = 1, #out_ids do out[#out + 1] = out_ids[i] end
return out
