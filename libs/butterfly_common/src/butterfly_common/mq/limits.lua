-- KEYS: limits, started
-- ARGV: 'get' | 'set', [max_running, rate, window_ms, set_by] ('' = no such limit)
-- Set (or, with neither limit, clear: the key goes, and claims skip every limit step) a
-- topic's limits, then read them with the running count and this window's claims.
-- Reply: {max_running, rate, window_ms, running, used, held, held_at, set_at, set_by}
-- ('' where unset).
if ARGV[1] == 'set' then
  if ARGV[2] == '' and ARGV[3] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HDEL', KEYS[1], 'max_running', 'rate', 'window')
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
    redis.call('HSET', KEYS[1], unpack(fields))
  end
end
local lim = redis.call('HMGET', KEYS[1], 'max_running', 'rate', 'window', 'win', 'used',
  'held', 'held_at', 'set_at', 'set_by')
local used = window_used(lim)
return {lim[1] or '', lim[2] or '', lim[3] or '', redis.call('ZCARD', KEYS[2]), used,
  lim[6] or 0, lim[7] or '', lim[8] or '', lim[9] or ''}
