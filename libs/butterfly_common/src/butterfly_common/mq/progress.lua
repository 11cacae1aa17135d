-- KEYS: msg
-- ARGV: token, progress_json
-- Store how far the running attempt got (Broker.progress). One key: works through
-- Twemproxy and on Redis Cluster like every record change.
-- Reply: 1 stored | 0 ignored (no longer started under this token: reaped, ended, deleted)
if not fenced(KEYS[1], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
