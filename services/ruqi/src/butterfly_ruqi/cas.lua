-- Compare-and-set on ONE key (Twemproxy-safe): move KEYS[1] from ARGV[1] to ARGV[2].
-- ARGV[3] is the new TTL in milliseconds. Returns 1 when the value matched and was replaced.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
