-- KEYS[1] namespace version key, ARGV[1] a committed revision
-- Raise the version to the revision, never lower it (writers may finish out of order).
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return current
