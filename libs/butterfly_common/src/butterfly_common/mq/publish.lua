-- KEYS: queue, delayed, workers, msg, prios, [dedup: bc:{T}:dedup:<dedup_key>]
-- ARGV: id, topic, data, delay_ms, at_front, timeout, max_retries, result_ttl,
--       failure_ttl, reqid, force, heartbeat_ttl_ms, notify (topic told when it ends, or ''),
--       priority, dedup_key, dedup_mode (until_done | throttle | debounce), dedup_ttl_ms
--       (0: none), dedup_extend ('1': a debounce restarts the ttl), trace (the producer's
--       W3C traceparent, or ''), group (or ''), batch (the batch id, or '')
-- Reply: {1, status} created | {0, status} id exists | {-1, ''} no live consumer; with a
-- dedup key {code, status, outcome, standing id, replaced id or ''}, outcome one of
-- new | replaced (created) | duplicate | throttled (nothing created: the standing
-- message's status).
local prefix = string.sub(KEYS[4], 1, #KEYS[4] - #ARGV[1])
return publish_one(KEYS[1], KEYS[2], KEYS[3], KEYS[5], prefix, KEYS[4], KEYS[6], ARGV)
