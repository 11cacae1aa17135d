-- A job's overlap state, ONE hash key (Twemproxy / Redis Cluster safe): KEYS[1] = ruqi:ov:<job>
--   run  the token (<owner>|<ms>) of the fire running now      exp  its lease end (server ms)
--   q    a JSON array of the fires waiting (buffer_one / buffer_all), oldest first
--   x:<token>  cancel_other: the run <token> was displaced by the fire named by the value
--              (its replica sees it, stops the run, and removes the field on release)
-- ARGV: op, token, lease ms, limit, item, steal, cancel
--   acquire: run the fire when nothing runs (or the run's lease ended, or the holder is
--            ARGV[6], an engine found dead); else, when ARGV[7] is '1' (cancel_other),
--            take the run over and mark the holder displaced; else buffer ARGV[5] when
--            fewer than ARGV[4] wait, else skip.
--                                          -> {'run'|'cancel'|'buffered'|'skip', holder}
--   release: the holder ARGV[2] ends its run; the oldest waiting fire, if any, is handed
--            to it (same token, new lease)  -> {'next', item} | {'done', ''} | {'gone', holder}
--            (a displaced run's release only drops its x: field)
--   peek:                                   -> {holder, waiting count}
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, op, token = KEYS[1], ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3]) or 0
local run = redis.call('HGET', key, 'run')
local exp = tonumber(redis.call('HGET', key, 'exp') or '0') or 0
local raw = redis.call('HGET', key, 'q')
local q = {}
if raw and raw ~= '' then q = cjson.decode(raw) end
local function keep()
  redis.call('PEXPIRE', key, lease * (#q + 2) + 86400000)
end
if op == 'peek' then
  return {run or '', #q}
end
if op == 'acquire' then
  if (not run) or exp < now or (ARGV[6] ~= '' and run == ARGV[6]) then
    redis.call('HSET', key, 'run', token, 'exp', now + lease)
    keep()
    return {'run', run or ''}
  end
  if ARGV[7] == '1' and run ~= token then  -- (the same token twice: skipped)
    redis.call('HSET', key, 'run', token, 'exp', now + lease, 'x:' .. run, token)
    keep()
    return {'cancel', run}
  end
  local limit = tonumber(ARGV[4]) or 0
  if #q >= limit then
    return {'skip', run}
  end
  q[#q + 1] = ARGV[5]
  redis.call('HSET', key, 'q', cjson.encode(q))
  keep()
  return {'buffered', run}
end
if op == 'release' then
  if run ~= token then
    redis.call('HDEL', key, 'x:' .. token)
    return {'gone', run or ''}
  end
  if #q == 0 then
    -- not DEL: the x: field of a run this one displaced stays until that run's release
    redis.call('HDEL', key, 'run', 'exp', 'q')
    return {'done', ''}
  end
  local item = table.remove(q, 1)
  if #q == 0 then
    redis.call('HSET', key, 'q', '', 'exp', now + lease)
  else
    redis.call('HSET', key, 'q', cjson.encode(q), 'exp', now + lease)
  end
  keep()
  return {'next', item}
end
return redis.error_reply('overlap.lua: unknown op ' .. tostring(op))
