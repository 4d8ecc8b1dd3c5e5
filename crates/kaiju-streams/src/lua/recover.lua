-- Takes over the pending entries of a consumer that is gone (its name lease ran out), and drops
-- the consumer once it owns nothing.
--
-- Only entries idle for at least ARGV[4] ms are taken: an instance that took the name again
-- meanwhile re-reads its pending entries at start, which makes them fresh, so they stay its.
-- And nothing is taken from a consumer that read (or tried to) within that time: whatever its
-- lease says, it is alive (a Python kaiju consumer, which takes no lease, under a name a
-- kaiju-rs listener once had).
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: the consumer that is gone. ARGV[3]: this
-- consumer. ARGV[4]: minimum idle time in ms. ARGV[5]: at most this many entries.
-- Returns {status, ids, delivery counts before this claim, XCLAIM's entries, pending left}.
-- status: 'absent' (no such consumer in the group), 'alive' (it read within ARGV[4] ms; the
-- last element is then its idle time in ms), or 'taken'. An id missing from the entries was deleted from the stream (Redis 7 drops it from
-- the pending list as it claims).

local min_idle = tonumber(ARGV[4])
local idle = nil
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] == ARGV[2] then
    idle = tonumber(info['idle'])
    break
  end
end
if idle == nil then return {'absent', {}, {}, {}, 0} end
if idle < min_idle then return {'alive', {}, {}, {}, idle} end

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
return {'taken', ids, counts, claimed, left}
