-- Marks a key revoked in its account index, so it stops counting toward
-- the account's limit. KEYS[1] account index, ARGV[1] key id.
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], string.sub(entry, 1, -2) .. '1')
return 1
