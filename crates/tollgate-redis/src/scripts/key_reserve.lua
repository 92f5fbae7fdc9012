-- Reserves a key id in its account's index, enforcing the limit on keys
-- that authenticate at `now` (retiring keys, still in their grace period
-- after a rotation, included).
-- KEYS[1] account index (hash: key id -> "<hash hex> <expires_at|-> <revoked_at|->")
-- ARGV[1] key id, ARGV[2] index entry, ARGV[3] limit (-1: none), ARGV[4] now
-- Returns 1 reserved, -1 limit reached, 0 the id is already in this account.
-- Times are fixed-width digit strings, so string order is time order.
-- Entries written before revocation times were indexed end in a flag
-- instead: "0" not revoked, "1" revoked (taken as revoked in the past).
local function valid_at(entry, now)
  local expires, revoked = string.match(entry, '^%x+ (%S+) (%S+)$')
  if not expires then
    return false
  end
  if expires ~= '-' and expires <= now then
    return false
  end
  if revoked == '-' or revoked == '0' then
    return true
  end
  return revoked ~= '1' and revoked > now
end

local limit = tonumber(ARGV[3])
if limit >= 0 then
  local active = 0
  for _, entry in ipairs(redis.call('HVALS', KEYS[1])) do
    if valid_at(entry, ARGV[4]) then
      active = active + 1
    end
  end
  if active >= limit then
    return -1
  end
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
return 1
