-- Hands pending entries back to the group (XNACK, Redis 8.8), only those this consumer still
-- owns: XNACK takes an entry from whoever holds it, and one another consumer claimed meanwhile
-- (and may be running) must stay with it. FAIL keeps the delivery count, so max_deliveries
-- still counts the delivery that failed. An entry handed back has no consumer: a claim
-- (XREADGROUP ... CLAIM, XAUTOCLAIM) takes it at once, whatever its idle time.
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: this consumer. ARGV[3..]: entry ids.
-- Returns the number of entries handed back.
local mine = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #pending == 1 and pending[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] end
end
if #mine == 0 then return 0 end
return redis.call('XNACK', KEYS[1], ARGV[1], 'FAIL', 'IDS', #mine, unpack(mine))
