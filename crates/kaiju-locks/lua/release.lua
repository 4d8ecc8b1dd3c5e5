-- Compare-and-delete: release only a lock this owner (and, with a token, this acquisition) holds.
-- KEYS: 1 lock, 2 fence, 3 alive (waiters). ARGV: 1 owner, 2 fencing token ('' = any),
-- 3 wake-up channel.
-- Returns 1 released, -1 held by another owner (or missing), -2 re-acquired since this token.
-- Idempotent per token: run again after it released, it returns 1 again.
local token, state = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+) (%S+)$')
-- A resend of a release that already ran: done, whoever holds the lock now (even a holder with
-- the same owner id, such as a Python service of the same app that took it meanwhile).
if ARGV[2] ~= '' and token == ARGV[2] and state == 'released' then
    return 1
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
if ARGV[2] ~= '' and token ~= ARGV[2] then
    return -2
end
redis.call('DEL', KEYS[1])
if token then
    -- Released by its own acquisition ('released', so that a resend of this release knows it
    -- ran), or taken away by a release without a token ('revoked': that acquisition's own
    -- release then reports the lock as lost, not as released).
    redis.call('SET', KEYS[2], token .. (ARGV[2] ~= '' and ' released' or ' revoked'), 'KEEPTTL')
end
-- Wake waiters only if there are any: in a cluster every PUBLISH goes to every node.
if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('PUBLISH', ARGV[3], '1')
end
return 1
