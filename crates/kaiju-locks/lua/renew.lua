-- Extend a lock only while this acquisition still holds it.
-- KEYS: 1 lock, 2 fence counter. ARGV: 1 owner, 2 fencing token, 3 lease ms.
-- Returns 1 renewed, 0 lost (expired, deleted, or taken by someone else).
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
end
return 0
