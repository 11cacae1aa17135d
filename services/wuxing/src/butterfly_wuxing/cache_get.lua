-- KEYS[1] namespace version key, KEYS[2] cache entry, KEYS[3] the version's lease mark
-- (same {namespace} hash tag); ARGV[1] the caller's lease in ms (0: it takes none)
-- The version and the entry in one round trip, read at the same instant. With a lease the
-- caller trusts this version for ARGV[1] ms from before it sent this: the mark keeps the
-- latest end of any lease (this server's ms, rounded up), which a write waits out
-- (version_advance.lua) - and no longer than that.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local version = redis.call('GET', KEYS[1])
local ms = tonumber(ARGV[1])
if version and ms > 0 then
  local t = redis.call('TIME')
  local ends = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ms + 1
  if ends > tonumber(redis.call('GET', KEYS[3]) or '0') then
    redis.call('SET', KEYS[3], string.format('%.0f', ends))
  end
end
return {version, KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) or false}
