-- Acquire one lock, first come first served.
-- KEYS: 1 lock, 2 fence counter, 3 queue (zset ticket -> arrival), 4 alive (hash ticket -> deadline ms), 5 arrival counter
-- ARGV: 1 owner, 2 lease ms, 3 ticket ('' = do not queue: fail unless nobody waits), 4 waiter liveness ms
-- Returns the fencing token (> 0) on success, 0 when the lock is held or another waiter is ahead.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ticket = ARGV[3]
local alive_ms = tonumber(ARGV[4])

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
if my_turn and redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
    if ticket ~= '' then
        redis.call('ZREM', KEYS[3], ticket)
        redis.call('HDEL', KEYS[4], ticket)
    end
    return redis.call('INCR', KEYS[2])
end

if ticket ~= '' then
    -- Abandoned queues disappear by themselves.
    redis.call('PEXPIRE', KEYS[3], alive_ms * 4)
    redis.call('PEXPIRE', KEYS[4], alive_ms * 4)
    redis.call('PEXPIRE', KEYS[5], alive_ms * 4)
end
return 0
