-- Extend a lock only while this acquisition still holds it.
-- KEYS: 1 lock, 2 fence. ARGV: 1 owner, 2 fencing token, 3 lease ms.
-- Returns 1 renewed, 0 lost (expired, deleted, or taken by someone else). Safe to run twice.
-- Both keys get the same deadline, so they still expire at the same moment.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local token, state = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+) (%S+)$')
if token ~= ARGV[2] or state == 'released' or state == 'revoked' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
