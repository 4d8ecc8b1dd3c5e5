-- The calls every lock makes, one or many per script call: kaiju-locks sends the first tries
-- and releases of one process that overlap in time as one EVALSHA, so what each EVALSHA costs
-- on its own (the write, the server's read and reply, the call) is shared.
--
-- ARGV[1]: one letter per call, in order. Each call's keys follow the previous call's in KEYS,
-- and its arguments the previous call's in ARGV (from ARGV[2]):
--   'a' a first try: take the lock only if it is free and nobody waits for it.
--       KEYS: lock, fence (see token.lua), queue. ARGV: owner, lease ms, attempt id.
--       Returns the fencing token; 0 if the lock is held; -1 if others wait for it (the caller
--       then joins the queue with acquire.lua). Idempotent per attempt: run again after it
--       took the lock (a resend after a lost reply), it returns the same token.
--   'r' a release: compare-and-delete on the owner and, if given, the token.
--       KEYS: lock, fence, alive (live waiters). ARGV: owner, token ('' = any), wake-up channel.
--       Returns 1 released, -1 held by another owner (or missing, or this token's hold was
--       revoked by a release without a token), -2 re-acquired since this token. Idempotent per
--       token: run again after it released, it returns 1 again.
-- Returns one reply per call, in order: the call's reply, or {message} if it raised an error.
-- Needs Redis 6.2+ (SET ... GET).
-- Each call runs under pcall: one call's error does not stop the others (and, as in any
-- script, does not undo what that call wrote before it).
--
-- The calls read their keys and arguments in place (KEYS[k + i], ARGV[a + i]) and are written
-- out inline: per call, every table, closure and redis.call costs server time.

-- The server clock in microseconds, read once per script call: the n-th lock a batch takes
-- gets clock + n - 1 (or the key's last token + 1 if that is more), so tokens still differ
-- across the keys of a batch, and a batch's script call reads TIME once.
local clock, clock_text
local taken = 0

local function first_try(k, a)
    local lock, fence = KEYS[k + 1], KEYS[k + 2]
    local owner, lease, attempt = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    if redis.call('EXISTS', KEYS[k + 3]) == 1 then
        return -1
    end
    if redis.call('SET', lock, owner, 'PX', lease, 'NX') then
        -- The next token (token.lua's next_token, without string.format when the clock is
        -- ahead of the fence, as it nearly always is).
        if not clock then
            local t = redis.call('TIME')
            clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
            clock_text = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
        end
        -- The token from the clock is written first and the last token read back in the same
        -- call (SET ... GET). In the rare case that the last token is not below it (a clock
        -- behind an earlier holder's), the next token above the last is written instead.
        local now = clock + taken
        local token = taken == 0 and clock_text or string.format('%d', now)
        local previous = redis.call('SET', fence, token .. ' ' .. attempt, 'PX', lease, 'GET')
        taken = taken + 1
        local last = previous and tonumber(string.match(previous, '^%d+')) or 0
        if now <= last then
            token = string.format('%.0f', last + 1)
            redis.call('SET', fence, token .. ' ' .. attempt, 'PX', lease)
        end
        return token
    end
    -- Held: perhaps by this very attempt (a resend after a lost reply).
    if redis.call('GET', lock) == owner then
        local token, holder = string.match(redis.call('GET', fence) or '', '^(%d+) (%S+)$')
        if holder == attempt then
            return token
        end
    end
    return 0
end

-- After the lock is deleted: wake waiters only if there are any (in a cluster every PUBLISH
-- goes to every node).
local function wake(k, a)
    if redis.call('EXISTS', KEYS[k + 3]) == 1 then
        redis.call('PUBLISH', ARGV[a + 3], '1')
    end
end

local function release(k, a)
    local lock, fence = KEYS[k + 1], KEYS[k + 2]
    local owner, given = ARGV[a + 1], ARGV[a + 2]
    -- An error (a key of another type) is a table, never equal to the owner.
    local holder = redis.pcall('GET', lock)
    if holder ~= owner then
        if given == '' then
            if type(holder) == 'table' then
                error(holder)
            end
            return -1
        end
        -- A resend of a release that already ran is done, whoever holds the key now (even a
        -- holder with the same owner id, such as a Python service of the same app that took
        -- it meanwhile, or a value of another type); otherwise the lock was lost.
        local token, state = string.match(redis.call('GET', fence) or '', '^(%d+) (%S+)$')
        if token == given and state == 'released' then
            return 1
        end
        if type(holder) == 'table' then
            error(holder)
        end
        return -1
    end
    -- Held by this owner. The usual case, a guard's release, marks the fence released and
    -- reads its old value back in the same call (SET ... GET), and puts the old value back
    -- (TTL included) if the hold turns out not to be this guard's. The server refuses that
    -- SET under maxmemory if it is the script's first write (a SET may add memory; DEL may
    -- not, and writes after it are allowed): then, as for a release by owner alone, the fence
    -- is read first and marked after the DEL. The rare outcomes that change nothing (another
    -- token's hold, a revoked one, a resend) still write the fence and put it back: a replica,
    -- the AOF and keyspace events see those writes.
    local previous, marked = nil, false
    if given ~= '' then
        previous = redis.pcall('SET', fence, given .. ' released', 'KEEPTTL', 'GET')
        marked = type(previous) ~= 'table'
    end
    if not marked then
        previous = redis.call('GET', fence)
    end
    local token, state = string.match(previous or '', '^(%d+) (%S+)$')
    if given ~= '' then
        -- Another token's (re-acquired since), or this token's hold was revoked (and the
        -- owner id took the lock again since, say from a Python service): not this guard's.
        if token ~= given or state == 'revoked' then
            if marked and previous then
                redis.call('SET', fence, previous, 'KEEPTTL')
            elseif marked then
                redis.call('DEL', fence)
            end
            return token ~= given and -2 or -1
        end
        -- Already released: a resend of this release, which ran.
        if state == 'released' then
            return 1
        end
    end
    redis.call('DEL', lock)
    if token and not marked then
        -- Released by its own acquisition ('released', so that a resend of this release knows
        -- it ran), or taken away by a release without a token ('revoked': that acquisition's
        -- own release then reports the lock as lost, not as released).
        redis.call('SET', fence, token .. (given ~= '' and ' released' or ' revoked'), 'KEEPTTL')
    end
    wake(k, a)
    return 1
end

local letters = ARGV[1]
-- One call alone (no batch formed): no pcall, as its error is the whole call's anyway.
if letters == 'a' then
    return { first_try(0, 1) }
elseif letters == 'r' then
    return { release(0, 1) }
end

local calls = { a = first_try, r = release }
local replies = {}
local k, a = 0, 1
for i = 1, #letters do
    local letter = string.sub(letters, i, i)
    local call = calls[letter]
    if not call then
        return redis.error_reply('ERR kaiju-locks batch: unknown call ' .. letter)
    end
    local ok, reply = pcall(call, k, a)
    if ok then
        replies[i] = reply
    else
        replies[i] = { type(reply) == 'table' and reply.err or tostring(reply) }
    end
    k = k + 3
    a = a + 3
end
return replies
