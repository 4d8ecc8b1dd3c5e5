-- Acquire several locks, all or nothing.
-- KEYS: 1..n locks, n+1..2n their fences (see next_token).
-- ARGV: 1 owner, 2 lease ms, 3 attempt id.
-- Returns the fencing tokens in key order, or an empty array if any lock is held.
-- Idempotent per attempt: run again, it returns the same tokens.
-- #include token.lua

local n = #KEYS / 2
local lease = ARGV[2]

local again = {}
for i = 1, n do
    again[i] = replayed(KEYS[i], KEYS[n + i], ARGV[1], ARGV[3])
    if not again[i] then
        again = nil
        break
    end
end
if again then return again end

for i = 1, n do
    if redis.call('EXISTS', KEYS[i]) == 1 then
        return {}
    end
end
local tokens = {}
for i = 1, n do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', lease)
    tokens[i] = next_token(KEYS[n + i])
    redis.call('SET', KEYS[n + i], tokens[i] .. ' ' .. ARGV[3], 'PX', lease)
end
return tokens
