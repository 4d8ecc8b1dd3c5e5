-- The lease on a consumer name: at most one live listener instance reads as a given consumer
-- of a group, so two processes started with the same name never run each other's pending
-- entries. The leases of a stream live in one hash: field = "<group>/<consumer>", value =
-- "<instance token> <expiry in ms, server time>".
--
-- KEYS[1]: the lease hash. ARGV[1]: field. ARGV[2]: this instance's token. ARGV[3]: lease in ms.
-- ARGV[4]: 'take' (acquire or renew) or 'release'.
-- Returns {1, 0} when this instance holds (or released) the lease, or {0, ms left} when another
-- live instance holds it.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local token, expires = string.match(current, '^(.*) (%d+)$')
  if token ~= ARGV[2] and expires and tonumber(expires) > now then
    return {0, tonumber(expires) - now}
  end
  if ARGV[4] == 'release' then
    if token == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
    return {1, 0}
  end
elseif ARGV[4] == 'release' then
  return {1, 0}
end

redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now + tonumber(ARGV[3])))
if not current then
  -- A new holder: drop the leases of instances that are gone.
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local expires = string.match(all[i + 1], ' (%d+)$')
    if expires and tonumber(expires) <= now then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
-- The hash outlives its last renewal by a day, then disappears with every stale lease.
redis.call('PEXPIRE', KEYS[1], 86400000)
return {1, 0}
