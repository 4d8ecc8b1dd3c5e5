-- Extend a lock only while this acquisition still holds it.
-- KEYS: 1 lock, 2 fence, 3 held. ARGV: 1 owner, 2 fencing token, 3 lease ms.
-- Returns 1 renewed, 0 lost (expired, deleted, or taken by someone else). Safe to run twice.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
    for i = 1, 3 do
        redis.call('PEXPIRE', KEYS[i], ARGV[3])
    end
    return 1
end
return 0
