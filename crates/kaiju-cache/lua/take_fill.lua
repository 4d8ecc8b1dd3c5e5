-- Takes the fill lock of a key for this filler. Safe to run twice: a resend after a lost reply
-- finds its own token and still wins.
-- KEYS[1]: the fill lock. ARGV[1]: this filler's token. ARGV[2]: lock time to live, ms.
-- Returns 1 if this filler holds the lock, 0 if another does.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
