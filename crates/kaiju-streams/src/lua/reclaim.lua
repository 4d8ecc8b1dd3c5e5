-- Claims a failed entry back for its retry, only if this consumer still owns it: an entry that
-- another consumer claimed meanwhile (and may be running) is never taken from it.
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: this consumer. ARGV[3]: the entry id.
-- Returns {0} when the entry is no longer this consumer's (acked, claimed by another, or gone),
-- {1, deliveries, entries} when it was claimed (`entries` is empty if the entry was deleted
-- from the stream: Redis 7 then drops it from the pending list).

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return {0} end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
return {1, pending[1][4] + 1, claimed}
