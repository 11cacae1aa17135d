-- KEYS: limits, started
-- ARGV: 'get' | 'set', [max_running, rate, window_ms, set_by, group_max_running,
--       then group, max_running pairs (per-group overrides)] ('' = no such limit)
-- Set (or, with no limit at all, clear: the key goes, and claims skip every limit step) a
-- topic's limits, then read them with the running count and this window's claims.
-- Reply: {max_running, rate, window_ms, running, used, held, held_at, set_at, set_by,
-- group_max_running, group_held, group_held_at, ready groups, {group, cap, ...},
-- {group, running, ...}} ('' where unset).
if ARGV[1] == 'set' then
  if ARGV[2] == '' and ARGV[3] == '' and (ARGV[6] or '') == '' and #ARGV <= 6 then
    redis.call('DEL', KEYS[1])
  else
    local drop = {'max_running', 'rate', 'window', 'group_max_running', 'group_caps'}
    for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
      if string.sub(f, 1, 6) == 'group:' then drop[#drop + 1] = f end
    end
    redis.call('HDEL', KEYS[1], unpack(drop))
    local fields = {'set_at', NOW, 'set_by', ARGV[5]}
    if ARGV[2] ~= '' then
      fields[#fields + 1] = 'max_running'
      fields[#fields + 1] = ARGV[2]
    end
    if ARGV[3] ~= '' then
      fields[#fields + 1] = 'rate'
      fields[#fields + 1] = ARGV[3]
      fields[#fields + 1] = 'window'
      fields[#fields + 1] = ARGV[4]
    end
    if (ARGV[6] or '') ~= '' then
      fields[#fields + 1] = 'group_max_running'
      fields[#fields + 1] = ARGV[6]
    end
    if #ARGV > 6 then
      fields[#fields + 1] = 'group_caps'
      fields[#fields + 1] = (#ARGV - 6) / 2
      for i = 7, #ARGV, 2 do
        fields[#fields + 1] = 'group:' .. ARGV[i]
        fields[#fields + 1] = ARGV[i + 1]
      end
    end
    redis.call('HSET', KEYS[1], unpack(fields))
  end
end
local lim = redis.call('HMGET', KEYS[1], 'max_running', 'rate', 'window', 'win', 'used',
  'held', 'held_at', 'set_at', 'set_by', 'group_max_running', 'group_held', 'group_held_at')
local used = window_used(lim)
local caps = {}
if redis.call('HEXISTS', KEYS[1], 'group_caps') == 1 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 6) == 'group:' then
      caps[#caps + 1] = string.sub(all[i], 7)
      caps[#caps + 1] = all[i + 1]
    end
  end
end
local base = topic_base(KEYS[1])
return {lim[1] or '', lim[2] or '', lim[3] or '', redis.call('ZCARD', KEYS[2]), used,
  lim[6] or 0, lim[7] or '', lim[8] or '', lim[9] or '', lim[10] or '', lim[11] or 0,
  lim[12] or '', redis.call('LLEN', base .. 'groups'), caps,
  redis.call('HGETALL', base .. 'grun')}
