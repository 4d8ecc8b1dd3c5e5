-- Appends entries to one stream in one call. StreamWriter::write_many sends one of these per
-- stream instead of one XADD per entry: fred writes every command of a pipeline to the socket
-- on its own, so 100 XADDs cost 100 socket writes (and 100 commands for the server to read);
-- this costs one.
--
-- KEYS[1]: the stream. ARGV[1]: the payload field name. ARGV[2]: the MAXLEN ~ cap, or '' for
-- none. ARGV[3]: the writer's IDMP producer id, or '' for none (a server without XADD IDMP).
-- ARGV[4]: the number of the first entry (its idempotency id). ARGV[5]: how many consecutive
-- numbers share a producer id ('<ARGV[3]>:<number // ARGV[5]>'). ARGV[6..]: the payloads, in
-- order. The same call sent again appends nothing twice: each entry's XADD IDMP answers with
-- the id the first call gave it.
-- Returns, for each entry in order, its id, or '!' followed by the error Redis gave for that
-- XADD (ids never start with '!'). Each XADD stands alone, as in a pipeline.
local field = ARGV[1]
local cap = ARGV[2]
local producer = ARGV[3]
local first = tonumber(ARGV[4]) or 0
local block = tonumber(ARGV[5]) or 1
local ids = {}
for i = 6, #ARGV do
    local args = { 'XADD', KEYS[1] }
    if producer ~= '' then
        local n = first + i - 6
        args[#args + 1] = 'IDMP'
        args[#args + 1] = producer .. ':' .. string.format('%d', math.floor(n / block))
        args[#args + 1] = string.format('%d', n)
    end
    if cap ~= '' then
        args[#args + 1] = 'MAXLEN'
        args[#args + 1] = '~'
        args[#args + 1] = cap
    end
    args[#args + 1] = '*'
    args[#args + 1] = field
    args[#args + 1] = ARGV[i]
    local id = redis.pcall(unpack(args))
    if type(id) == 'table' and id.err then
        id = '!' .. id.err
    end
    ids[i - 5] = id
end
return ids
