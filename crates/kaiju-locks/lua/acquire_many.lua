-- Acquire several locks, all or nothing.
-- KEYS: 1..n locks, n+1..2n their fence counters. ARGV: 1 owner, 2 lease ms.
-- Returns the fencing tokens in key order, or an empty array if any lock is held.
local n = #KEYS / 2
for i = 1, n do
    if redis.call('EXISTS', KEYS[i]) == 1 then
        return {}
    end
end
local tokens = {}
for i = 1, n do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    tokens[i] = redis.call('INCR', KEYS[n + i])
end
return tokens
