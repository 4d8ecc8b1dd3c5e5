-- Shared by the acquire scripts (included where they say `-- #include token.lua`): the next
-- fencing token of a lock, and the replay of an attempt.
--
-- Tokens come from the server clock in microseconds, and are above the last token still
-- remembered in the fence key: strictly increasing for a key even after its fence expired or
-- was deleted, after a restart without persistence, or after a failover that lost the last
-- write (as long as the servers' clocks do not go back). Microseconds stay below 2^53, so a Lua
-- number holds them exactly; '%.0f' writes them without an exponent.
--
-- The fence key holds '<token> <attempt id>' while that acquisition holds the lock,
-- '<token> released' once it let go, and '<token> revoked' once a release without a token
-- (`Locks::release` by owner) took it away. It expires with the lock (the scripts set and extend both
-- with the same lease in the same call, so they expire at the same moment).
local function next_token(fence_key)
    local t = redis.call('TIME')
    local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local last = tonumber(string.match(redis.call('GET', fence_key) or '', '^(%d+)') or '0') or 0
    return string.format('%.0f', math.max(last + 1, now_us))
end

-- The token this attempt got, if it holds the lock (a resend after a lost reply).
local function replayed(lock_key, fence_key, owner, attempt)
    if redis.call('GET', lock_key) ~= owner then return nil end
    local token, holder = string.match(redis.call('GET', fence_key) or '', '^(%d+) (%S+)$')
    if holder == attempt then return token end
    return nil
end
