-- KEYS[1] namespace version key, KEYS[2] its lease mark (same {namespace} hash tag)
-- ARGV[1] a committed revision
-- Raise the version to the revision, never lower it (writers may finish out of order).
-- Returns {version, ms}: ms is how long the latest read lease on an older version still
-- runs (the mark holds its end in this server's milliseconds, cache_get.lua sets it), 0
-- when none does: the writer waits that long before it answers. ms is -1 (the writer
-- waits a whole lease) when the version key was missing: a Redis that lost its keys
-- (restarted, flushed) lost the marks of the leases processes may still hold.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local found = redis.call('GET', KEYS[1])
local current = tonumber(found or '0')
local wanted = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(redis.call('GET', KEYS[2]) or '0') - now
if wait < 0 then wait = 0 end
if not found then wait = -1 end
if current < wanted then
  redis.call('SET', KEYS[1], ARGV[1])
  current = wanted
end
return {current, wait}
