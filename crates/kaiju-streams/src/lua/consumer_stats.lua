-- Publishes the counters of one listener process, so that `kaiju streams` (another process)
-- can show them. The rows of a stream's consumers live in one hash: field =
-- "<group>/<consumer>", value = "<expiry in ms, server time> published_at=<ms> <counters>". A row
-- not written again within its time to live is ignored by readers and pruned (below); the hash
-- itself expires with its last write.
--
-- KEYS[1]: the stats hash. ARGV[1]: field. ARGV[2]: the counters ("name=n ..."). ARGV[3]: the
-- row's time to live in ms. Returns the number of expired rows dropped.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1],
  string.format('%d', now + ttl) .. ' published_at=' .. string.format('%d', now) .. ' ' .. ARGV[2])
-- Expired rows are pruned from a random sample of at most 20 (HRANDFIELD, Redis 6.2+), so that
-- a publish costs the same however large the hash grew: a full scan here would block the
-- server for as long as a hostile or runaway hash is long. Without HRANDFIELD, nothing is
-- pruned (rows still expire with the hash, and readers ignore expired rows).
local dropped = 0
local ok, sample = pcall(redis.call, 'HRANDFIELD', KEYS[1], 20, 'WITHVALUES')
if ok and type(sample) == 'table' then
  for i = 1, #sample, 2 do
    local expires = tonumber(string.match(sample[i + 1], '^(%d+) '))
    if not expires or expires <= now then
      redis.call('HDEL', KEYS[1], sample[i])
      dropped = dropped + 1
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return dropped
