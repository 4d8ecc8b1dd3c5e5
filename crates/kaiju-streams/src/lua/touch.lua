-- Marks entries this consumer is still working on as recently delivered, so that other
-- consumers' claim passes (which take entries idle for a while) leave them alone. Only entries
-- this consumer still owns are touched; the delivery count does not change (JUSTID).
--
-- KEYS[1]: the stream. ARGV[1]: the group. ARGV[2]: this consumer. ARGV[3..]: entry ids.
-- Returns the number of entries touched.
local touched = 0
for i = 3, #ARGV do
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
    if #pending == 1 and pending[1][2] == ARGV[2] then
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
        touched = touched + 1
    end
end
return touched
