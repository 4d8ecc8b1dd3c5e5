-- Shared by the acquire scripts (prepended to them): the next fencing token of a lock.
--
-- Tokens come from the server clock in microseconds, and are above the last token still
-- remembered in the fence key: strictly increasing for a key even after its side keys expired
-- or were deleted, after a restart without persistence, or after a failover that lost the last
-- write (as long as the servers' clocks do not go back). Microseconds stay below 2^53, so a Lua
-- number holds them exactly; '%.0f' writes them without an exponent.
local function next_token(fence_key)
    local t = redis.call('TIME')
    local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local last = tonumber(redis.call('GET', fence_key) or '0') or 0
    return string.format('%.0f', math.max(last + 1, now_us))
end
