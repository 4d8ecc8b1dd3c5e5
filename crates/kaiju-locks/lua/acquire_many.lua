-- Acquire several locks, all or nothing.
-- KEYS: 1..n locks, n+1..2n their fences, 2n+1..3n their held keys.
-- ARGV: 1 owner, 2 lease ms, 3 attempt id.
-- Returns the fencing tokens in key order, or an empty array if any lock is held.
-- Idempotent per attempt: run again, it returns the same tokens.
local n = #KEYS / 3
local lease = ARGV[2]

local replayed = {}
for i = 1, n do
    local held = redis.call('GET', KEYS[2 * n + i])
    local attempt, token
    if held and redis.call('GET', KEYS[i]) == ARGV[1] then
        attempt, token = string.match(held, '^(%S+) (%d+)$')
    end
    if attempt ~= ARGV[3] then
        replayed = nil
        break
    end
    replayed[i] = token
end
if replayed then return replayed end

for i = 1, n do
    if redis.call('EXISTS', KEYS[i]) == 1 then
        return {}
    end
end
local tokens = {}
for i = 1, n do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', lease)
    tokens[i] = next_token(KEYS[n + i])
    redis.call('SET', KEYS[n + i], tokens[i], 'PX', lease)
    redis.call('SET', KEYS[2 * n + i], ARGV[3] .. ' ' .. tokens[i], 'PX', lease)
end
return tokens
