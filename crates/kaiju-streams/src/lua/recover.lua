-- Takes over the pending entries of a consumer that is gone (its name lease ran out), and drops
-- the consumer once it owns nothing.
--
-- Only entries idle for at least ARGV[4] ms are taken: an instance that took the name again
-- meanwhile re-reads its pending entries at start, which makes them fresh, so they stay its.
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: the consumer that is gone. ARGV[3]: this
-- consumer. ARGV[4]: minimum idle time in ms. ARGV[5]: at most this many entries.
-- Returns {ids, delivery counts before this claim, XCLAIM's entries, pending entries left}.
-- An id missing from the entries was deleted from the stream (Redis 7 drops it from the
-- pending list as it claims).

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[4], '-', '+', ARGV[5], ARGV[2])
local ids, counts = {}, {}
for i, p in ipairs(pending) do
  ids[i] = p[1]
  counts[i] = p[4]
end
local claimed = {}
if #ids > 0 then
  claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], ARGV[4], unpack(ids))
end
local left = #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if left == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return {ids, counts, claimed, left}
