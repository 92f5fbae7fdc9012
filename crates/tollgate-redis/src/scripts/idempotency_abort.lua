-- Deletes the claim ARGV[1] (16-byte token) if it still holds the key.
-- KEYS[1] the entry. Returns 1 deleted, 0 left alone.
local entry = redis.call('GET', KEYS[1])
if not entry or string.sub(entry, 1, 1) ~= 'p' or string.sub(entry, 2, 17) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
