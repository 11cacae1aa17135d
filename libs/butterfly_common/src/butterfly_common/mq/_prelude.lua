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
  local ttl = tonumber(redis.call('HGET', key, 'failure_ttl')) or 0
  if ttl <= 0 then
    redis.call('DEL', key)
    return 'failed'
  end
  redis.call('HSET', key, 'status', 'failed', 'ended_at', NOW)
  redis.call('ZADD', failed, NOW + ttl, id)
  redis.call('PEXPIRE', key, ttl)
  return 'failed'
end
