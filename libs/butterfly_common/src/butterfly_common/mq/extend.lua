-- KEYS: started, msg
-- ARGV: id, token, seconds_ms
-- New lease deadline = min(now + seconds, started_at + timeout); never shortens a lease.
-- Reply: the deadline in ms, 0 when fenced out or the message's own timeout has passed.
if not fenced(KEYS[2], ARGV[2]) then
  return 0
end
local r = redis.call('HMGET', KEYS[2], 'started_at', 'timeout')
local deadline = math.min(NOW + tonumber(ARGV[3]), tonumber(r[1]) + tonumber(r[2]))
if deadline <= NOW then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', 'GT', deadline, ARGV[1])
return deadline
