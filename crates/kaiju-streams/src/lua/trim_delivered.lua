-- Trims a stream up to the oldest entry that some consumer group still needs, in one atomic
-- step: a group created, or an entry read, while this runs cannot lose anything.
--
-- A group needs its oldest pending entry (delivered, not acknowledged), or, with nothing pending,
-- every entry after its last delivered one. Ids are compared as decimal strings, because Lua
-- numbers (doubles) cannot hold a 64-bit sequence number exactly.
--
-- With ARGV[1] == 'ACKED' (Redis 8.2, XTRIM ... ACKED): the bound is the lowest last delivered
-- id of the groups (nothing after it was given to every group), and XTRIM's ACKED keeps, under
-- that bound, every entry still pending in any group (the server checks each one). So acked
-- entries behind an entry that stays pending (a slow or stuck consumer) go too, where the plain
-- trim stops at the oldest pending entry. The MINID bound is also what keeps the trim cheap: ACKED
-- alone (MAXLEN 0 ACKED) would walk the whole stream, a backlog included, on every trim. And with
-- no group at all ACKED deletes everything, so the script still looks at the groups first.
--
-- KEYS[1]: the stream. ARGV[1]: 'ACKED' or nothing. Returns the number of entries removed.

local U64_MAX = '18446744073709551615'

local function parts(id)
  return string.match(id, '^(%d+)-(%d+)$')
end

local function num_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function id_less(a, b)
  local ams, aseq = parts(a)
  local bms, bseq = parts(b)
  if ams ~= bms then return num_less(ams, bms) end
  return num_less(aseq, bseq)
end

local function incr(digits)
  local out = {}
  local carry = 1
  for i = #digits, 1, -1 do
    local d = string.byte(digits, i) - 48 + carry
    if d == 10 then
      out[i] = '0'
      carry = 1
    else
      out[i] = string.char(d + 48)
      carry = 0
    end
  end
  local s = table.concat(out)
  if carry == 1 then s = '1' .. s end
  return s
end

-- The smallest id above `id`; the largest id there is stays itself (nothing is above it).
local function next_id(id)
  local ms, seq = parts(id)
  if seq ~= U64_MAX then return ms .. '-' .. incr(seq) end
  if ms ~= U64_MAX then return incr(ms) .. '-0' end
  return id
end

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end

local acked = ARGV[1] == 'ACKED'
local cutoff = nil
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local needed
  if acked then
    needed = next_id(info['last-delivered-id'])
  elseif tonumber(info['pending']) > 0 then
    needed = redis.call('XPENDING', KEYS[1], info['name'])[2]
  else
    needed = next_id(info['last-delivered-id'])
  end
  if cutoff == nil or id_less(needed, cutoff) then cutoff = needed end
end

if cutoff == nil or cutoff == '0-0' then return 0 end
if acked then return redis.call('XTRIM', KEYS[1], 'MINID', cutoff, 'ACKED') end
return redis.call('XTRIM', KEYS[1], 'MINID', cutoff)
