-- Undo an acquire whose outcome the caller never learned (its reply was lost, or the caller
-- gave up): release the lock only if this very attempt took it.
-- KEYS: 1 lock, 2 fence, 3 alive (waiters). ARGV: 1 owner, 2 attempt id, 3 wake-up channel.
-- Returns 1 if the attempt held the lock and it was released, 0 otherwise.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local token, holder = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+) (%S+)$')
if holder ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], token .. ' released', 'KEEPTTL')
if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('PUBLISH', ARGV[3], '1')
end
return 1
