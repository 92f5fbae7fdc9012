-- Replaces the claim ARGV[1] with its response, if that claim still holds the key.
-- KEYS[1] the entry. Pending: 'p' .. token (16 bytes) .. fingerprint (32 bytes).
-- Completed: 'c' .. fingerprint .. response. ARGV[2] response, ARGV[3] TTL in ms.
-- Returns 1 stored, 0 the claim was lost (expired, aborted or replaced).
local entry = redis.call('GET', KEYS[1])
if not entry or string.sub(entry, 1, 1) ~= 'p' or string.sub(entry, 2, 17) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'c' .. string.sub(entry, 18, 49) .. ARGV[2], 'PX', ARGV[3])
return 1
