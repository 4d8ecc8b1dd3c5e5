-- Deletes the fill lock KEYS[1] only if it still holds this filler's token ARGV[1].
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
