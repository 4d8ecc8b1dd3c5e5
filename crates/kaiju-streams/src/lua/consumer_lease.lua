-- The lease on a consumer name: at most one live listener instance reads as a given consumer
-- of a group, so two processes started with the same name never run each other's pending
-- entries. The leases of a stream live in one hash: field = "<group>/<consumer>", value =
-- "<instance token> <expiry in ms, server time>".
--
-- A lease that ran out is kept (for a day) as the proof that its consumer is gone: the other
-- consumers of its group take over its pending entries, then 'forget' it. A release makes the
-- lease run out now, for the same reason.
--
-- KEYS[1]: the lease hash. ARGV[1]: field. ARGV[2]: this instance's token. ARGV[3]: lease in ms.
-- ARGV[4]: 'take' (acquire or renew), 'release', or 'forget' (drop the lease ARGV[1] if it ran
-- out). ARGV[5] ('take'): the group's field prefix, "<group>/".
-- Returns {0, ms left} when another live instance holds the lease; otherwise {1, 0}, followed,
-- for 'take', by the names of (at most 100 of) the group's consumers whose lease ran out
-- (none when this instance's own lease had run out too: see `lapsed`).

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local KEPT_FOR = 86400000
local MAX_REPORTED = 100

local function expiry(value)
  return tonumber(string.match(value, ' (%d+)$'))
end

local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == 'forget' then
  local expires = current and expiry(current)
  if expires and expires <= now then redis.call('HDEL', KEYS[1], ARGV[1]) end
  return {1, 0}
end
-- This instance's own lease ran out before it renewed it: Redis stalled (a pause, a fork, a
-- failover), or this process was frozen or cut off. Every other lease may have run out for the
-- same reason, while their holders are alive: none is reported gone this time.
local lapsed = false
if current then
  local token, expires = string.match(current, '^(.*) (%d+)$')
  if token ~= ARGV[2] and expires and tonumber(expires) > now then
    return {0, tonumber(expires) - now}
  end
  lapsed = token == ARGV[2] and expires ~= nil and tonumber(expires) <= now
  if ARGV[4] == 'release' then
    -- Run out now rather than deleted: the name is free at once, and the group's other
    -- consumers take over what this one left pending (a stop past its deadline), then drop it.
    if token == ARGV[2] then
      redis.call('HSET', KEYS[1], ARGV[1], token .. ' ' .. string.format('%d', now))
    end
    return {1, 0}
  end
elseif ARGV[4] == 'release' then
  return {1, 0}
end

redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now + tonumber(ARGV[3])))
local reply = {1, 0}
local prefix = ARGV[5] or ''
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local expires = expiry(all[i + 1])
  if expires and expires <= now then
    if expires + KEPT_FOR <= now then
      redis.call('HDEL', KEYS[1], all[i])
    elseif not lapsed and prefix ~= '' and #reply < MAX_REPORTED + 2
        and string.sub(all[i], 1, #prefix) == prefix then
      reply[#reply + 1] = string.sub(all[i], #prefix + 1)
    end
  end
end
-- The hash outlives its last renewal by a day, then disappears with every stale lease.
redis.call('PEXPIRE', KEYS[1], KEPT_FOR)
return reply
