-- KEYS: queue, delayed, workers, prios (one topic)
-- ARGV: msg_prefix, dedup_prefix, width (21), then `width` arguments per message in
--       publish.lua's ARGV order (dedup_key '' when the message has none)
-- Several publishes of one topic in one call, each exactly publish.lua's (its own id
-- check, dedup, consumer check). Reply: 5 values per message, in order: code, status,
-- outcome, standing id, replaced id ('' where publish.lua answers fewer).
local prefix, dprefix, width = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, width do
  local a = {unpack(ARGV, i, i + width - 1)}
  local dkey = nil
  if a[15] ~= '' then dkey = dprefix .. a[15] end
  local r = publish_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], prefix, prefix .. a[1], dkey, a)
  for j = 1, 5 do out[#out + 1] = r[j] or '' end
end
return out
