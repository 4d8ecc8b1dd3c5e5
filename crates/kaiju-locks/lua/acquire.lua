-- Acquire one lock, first come first served: the queued tries (a first try that finds the lock
-- free and nobody waiting is batch.lua's 'a').
-- KEYS: 1 lock, 2 fence (see next_token), 3 queue (zset ticket -> arrival), 4 alive (hash
--       waiter -> deadline ms), 5 arrival counter
-- ARGV: 1 owner, 2 lease ms, 3 ticket ('' = do not queue: fail unless nobody waits),
--       4 waiter liveness ms, 5 attempt id
-- Returns the fencing token on success, 0 when the lock is held or another waiter is ahead.
-- Idempotent per attempt: run again (a resend after a lost reply), it returns the same token.

-- #include token.lua

local lease = ARGV[2]
local ticket = ARGV[3]

local function take()
    local token = next_token(KEYS[2])
    redis.call('SET', KEYS[2], token .. ' ' .. ARGV[5], 'PX', lease)
    return token
end

local again = replayed(KEYS[1], KEYS[2], ARGV[1], ARGV[5])
if again then return again end

local alive_ms = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if ticket ~= '' then
    if not redis.call('ZSCORE', KEYS[3], ticket) then
        redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ticket)
    end
    redis.call('HSET', KEYS[4], ticket, now + alive_ms)
end

-- Waiters that stopped refreshing (crashed, gave up) leave the head of the queue.
while true do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head then break end
    local deadline = tonumber(redis.call('HGET', KEYS[4], head) or '0')
    if deadline >= now then break end
    redis.call('ZREM', KEYS[3], head)
    redis.call('HDEL', KEYS[4], head)
end

local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
local my_turn = (head == nil and ticket == '') or head == ticket
local token = nil
if my_turn and redis.call('SET', KEYS[1], ARGV[1], 'PX', lease, 'NX') then
    token = take()
    if ticket ~= '' then
        redis.call('ZREM', KEYS[3], ticket)
        redis.call('HDEL', KEYS[4], ticket)
    end
end

if ticket ~= '' then
    -- Queue keys outlive their last waiter briefly, then disappear by themselves.
    for i = 3, 5 do
        if redis.call('EXISTS', KEYS[i]) == 1 then
            redis.call('PEXPIRE', KEYS[i], alive_ms * 4)
        end
    end
end
return token or 0
