-- Appends entries to one stream in one call. StreamWriter::write_many sends one of these per
-- stream instead of one XADD per entry: fred writes every command of a pipeline to the socket
-- on its own, so 100 XADDs cost 100 socket writes (and 100 commands for the server to read);
-- this costs one.
--
-- KEYS[1]: the stream. ARGV[1]: the payload field name. ARGV[2]: the MAXLEN ~ cap, or '' for
-- none. ARGV[3..]: the payloads, in order.
-- Returns, for each entry in order, its id, or '!' followed by the error Redis gave for that
-- XADD (ids never start with '!'). Each XADD stands alone, as in a pipeline.
local field = ARGV[1]
local cap = ARGV[2]
local ids = {}
for i = 3, #ARGV do
    local id
    if cap == '' then
        id = redis.pcall('XADD', KEYS[1], '*', field, ARGV[i])
    else
        id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', field, ARGV[i])
    end
    if type(id) == 'table' and id.err then
        id = '!' .. id.err
    end
    ids[i - 2] = id
end
return ids
