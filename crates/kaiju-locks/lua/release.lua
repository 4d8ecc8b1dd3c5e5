-- Compare-and-delete: release only a lock this owner (and, with a token, this acquisition) holds.
-- KEYS: 1 lock, 2 fence counter. ARGV: 1 owner, 2 fencing token ('' = any), 3 wake-up channel.
-- Returns 1 released, -1 held by another owner (or missing), -2 re-acquired since this token.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return -2
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], '1')
return 1
