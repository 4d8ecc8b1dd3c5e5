-- Publishes the counters of one listener process, so that `kaiju streams` (another process)
-- can show them. The rows of a stream's consumers live in one hash: field =
-- "<group>/<consumer>", value = "<expiry in ms, server time> published_at=<ms> <counters>". A row not written
-- again within its time to live is dropped (here, at most 100 a call) and ignored by readers;
-- the hash itself expires with its last write.
--
-- KEYS[1]: the stats hash. ARGV[1]: field. ARGV[2]: the counters ("name=n ..."). ARGV[3]: the
-- row's time to live in ms. Returns the number of expired rows dropped.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1],
  string.format('%d', now + ttl) .. ' published_at=' .. string.format('%d', now) .. ' ' .. ARGV[2])
local dropped = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if dropped >= 100 then break end
  local expires = tonumber(string.match(all[i + 1], '^(%d+) '))
  if not expires or expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
    dropped = dropped + 1
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return dropped
