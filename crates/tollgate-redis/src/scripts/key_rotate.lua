-- Rotates a key in one step: if the old key is known, still valid and not
-- retiring, and (with a limit) its successor's account has fewer than
-- `limit` keys valid at `now` (retiring ones included, as key_reserve
-- counts them), writes the successor (as key_reserve and key_create
-- would) and schedules the old key's revocation. Both keys belong to one
-- account, so every key here carries the account's hash tag (one slot);
-- the successor's id and hash pointers are claimed before, by the caller.
-- KEYS[1] old record (hash), KEYS[2] the account's index,
-- KEYS[3] successor's record.
-- ARGV[1] old key id, ARGV[2] old key's expiry (or -), ARGV[3] now,
-- ARGV[4] retire at, ARGV[5] successor id,
-- ARGV[6] successor's account index entry, ARGV[7] limit (-1: none),
-- ARGV[8] the changes channel, ARGV[9] the old key's change and ARGV[10]
-- the successor's (both published with the write), ARGV[11..] successor's
-- record fields and values.
-- Returns {status, fields}: {1, the old record's fields after the change}
-- rotated; else no fields and 0 the old key is unknown, -1 it is retiring,
-- -2 it is no longer valid, -3 the successor's id exists, -4 a record with
-- the successor's hash exists, -5 the account is at its limit.
-- Every check comes before the first write, so a refusal changes nothing.
-- Times are fixed-width digit strings, so string order is time order.
-- Index entries: "<hash hex> <expires_at|-> <revoked_at|->"; older ones end
-- in a flag instead, "0" not revoked, "1" revoked (taken as in the past).
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

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, {}}
end
local revoked = redis.call('HGET', KEYS[1], 'revoked_at')
if (revoked and revoked <= ARGV[3]) or (ARGV[2] ~= '-' and ARGV[2] <= ARGV[3]) then
  return {-2, {}}
end
if revoked then
  return {-1, {}}
end
local limit = tonumber(ARGV[7])
if limit >= 0 then
  local active = 0
  for _, entry in ipairs(redis.call('HVALS', KEYS[2])) do
    if valid_at(entry, ARGV[3]) then
      active = active + 1
    end
  end
  if active >= limit then
    return {-5, {}}
  end
end
if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then
  return {-3, {}}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {-4, {}}
end
redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[3], unpack(ARGV, 11))
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[4])
redis.call('PUBLISH', ARGV[8], ARGV[9])
redis.call('PUBLISH', ARGV[8], ARGV[10])
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if entry then
  local head = string.match(entry, '^(%x+ %S+) %S+$')
  if head then
    redis.call('HSET', KEYS[2], ARGV[1], head .. ' ' .. ARGV[4])
  end
end
return {1, redis.call('HGETALL', KEYS[1])}
