-- Runs the commands of a transaction in one atomic step: no other client's command runs in
-- between. Like MULTI/EXEC, a command that fails at run time (WRONGTYPE) does not undo the ones
-- before it, nor stop the ones after it; each reports on its own.
--
-- KEYS: the key of each command, in order (every command has exactly one key).
-- ARGV: per command: its name, the number of its other arguments, those arguments.
-- Returns, per command, {1, reply} or {0, error text}.
local out = {}
local a = 1
for i = 1, #KEYS do
    local args = {ARGV[a], KEYS[i]}
    local n = tonumber(ARGV[a + 1])
    for j = 1, n do
        args[#args + 1] = ARGV[a + 1 + j]
    end
    a = a + 2 + n
    local reply = redis.pcall(unpack(args))
    if type(reply) == 'table' and reply.err then
        out[i] = {0, reply.err}
    else
        out[i] = {1, reply}
    end
end
return out
