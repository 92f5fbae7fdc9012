-- Reserves a key id in its account's index, enforcing the active key limit.
-- KEYS[1] account index (hash: key id -> "<hash hex> <expires_at|-> <revoked 0|1>")
-- ARGV[1] key id, ARGV[2] index entry, ARGV[3] limit (-1: none), ARGV[4] now
-- Returns 1 reserved, -1 limit reached, 0 the id is already in this account.
-- Times are fixed-width digit strings, so string order is time order.
local limit = tonumber(ARGV[3])
if limit >= 0 then
  local active = 0
  for _, entry in ipairs(redis.call('HVALS', KEYS[1])) do
    local expires, revoked = string.match(entry, '^%x+ (%S+) (%d)$')
    if revoked == '0' and (expires == '-' or expires > ARGV[4]) then
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
