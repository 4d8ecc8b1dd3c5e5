-- The floor of any lock whose acquire and release are both scripts: batch.lua's calling
-- convention (letters, 3 keys and 3 arguments per call), with nothing but SET NX PX for a
-- first try and compare-and-delete for a release. No fencing token (it returns a fixed one),
-- no queue, no idempotent resends: not a usable lock, a measurement.
--
-- It answers "how fast could kaiju-locks be if the lock logic cost nothing?" on a machine:
--   cp bench/experiments/lock-floor.lua crates/kaiju-locks/lua/batch.lua
--   cargo build --release -p kaiju-bench
--   target/release/kaiju-bench profile locks kaiju 64   # and 1; compare with `raw`
--   git checkout crates/kaiju-locks/lua/batch.lua
-- Measured on 2026-11-26 (2 cores, Redis 7.0.15, alternating runs): 64 tasks 58-82k pairs/s
-- (median 79k) against raw SET NX PX + DEL 74-101k (median 96k), 1 task 6.1-7.0k against
-- 7.6-8.6k: 0.73-0.84x.
local function first_try(k, a)
    if redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[a + 2], 'NX') then
        return '1000'
    end
    return 0
end

local function release(k, a)
    if redis.call('GET', KEYS[k + 1]) ~= ARGV[a + 1] then
        return -1
    end
    redis.call('DEL', KEYS[k + 1])
    return 1
end

local calls = { a = first_try, r = release }
local letters = ARGV[1]
local replies = {}
local k, a = 0, 1
for i = 1, #letters do
    local ok, reply = pcall(calls[string.sub(letters, i, i)], k, a)
    replies[i] = ok and reply or { tostring(reply) }
    k = k + 3
    a = a + 3
end
return replies
