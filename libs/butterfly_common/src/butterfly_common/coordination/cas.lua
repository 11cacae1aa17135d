-- Compare-and-set on ONE key (Twemproxy-safe): move KEYS[1] from ARGV[1] to ARGV[2].
-- ARGV[3]: the new TTL in milliseconds, or "" to keep the key's current TTL.
-- Returns 1 when the value matched and was replaced, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] ~= nil and ARGV[3] ~= '' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  end
  return 1
end
return 0
