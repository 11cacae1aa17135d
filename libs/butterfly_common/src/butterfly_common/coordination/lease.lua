-- A lease with fencing tokens on ONE hash key (Twemproxy-safe), timed by the server clock.
-- Fields: h = holder ("" when free), t = last token handed out, e = expiry (epoch ms).
-- The key never expires, so tokens only grow: a holder that lost its lease cannot act
-- with a token as new as its successor's.
-- ARGV: op (acquire | renew | release), holder, token, ttl_ms.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local op, who, token, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'h', 't', 'e')
local holder, current, expiry = state[1] or '', state[2] or '0', tonumber(state[3] or '0')
if op == 'acquire' then
  if holder ~= '' and expiry > ms then
    if holder == who then
      redis.call('HSET', KEYS[1], 'e', ms + ttl)
      return tonumber(current)
    end
    return 0
  end
  local t = redis.call('HINCRBY', KEYS[1], 't', 1)
  redis.call('HSET', KEYS[1], 'h', who, 'e', ms + ttl)
  return t
end
if holder ~= who or current ~= token then
  return 0
end
if op == 'renew' then
  redis.call('HSET', KEYS[1], 'e', ms + ttl)
  return 1
end
redis.call('HSET', KEYS[1], 'h', '', 'e', 0)
return 1
