-- Removes the consumers of a group that have been idle at least ARGV[2] ms and own no pending
-- entry. Checking and deleting happen in one atomic step, so a consumer that reads an entry in
-- between is never deleted with it (XGROUP DELCONSUMER drops the consumer's pending entries).
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: minimum idle time in ms. ARGV[3]: the
-- caller's own consumer name, never removed. Returns the number of consumers removed.

local removed = 0
local min_idle = tonumber(ARGV[2])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] ~= ARGV[3] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
