-- KEYS: started, msg
-- ARGV: id, token, seconds_ms, settle_grace_ms
-- New lease deadline = min(now + seconds, started_at + timeout + settle_grace); never
-- shortens a lease. The grace is the consumer's time to record a timed-out attempt's
-- failure before reap may take it for lost.
-- Reply: the deadline in ms, 0 when fenced out or the message's own timeout has passed.
if not fenced(KEYS[2], ARGV[2]) then
  return 0
end
local r = redis.call('HMGET', KEYS[2], 'started_at', 'timeout')
local time_up = tonumber(r[1]) + tonumber(r[2])
if time_up <= NOW then
  return 0
end
local deadline = math.min(NOW + tonumber(ARGV[3]), time_up + tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], 'XX', 'GT', deadline, ARGV[1])
return deadline
