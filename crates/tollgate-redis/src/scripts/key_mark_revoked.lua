-- Writes a key's revocation time into its account index entry, so the
-- limit stops counting the key once that time has come. The earliest time
-- wins, as in the record.
-- KEYS[1] account index, ARGV[1] key id, ARGV[2] revoked at.
-- An entry's last field is "<revoked_at>" or "-" (older entries: a flag,
-- "0" or "1", which carries no time and is replaced).
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return 0
end
local head, revoked = string.match(entry, '^(%x+ %S+) (%S+)$')
if not head then
  return 0
end
if revoked == '-' or revoked == '0' or revoked == '1' or ARGV[2] < revoked then
  redis.call('HSET', KEYS[1], ARGV[1], head .. ' ' .. ARGV[2])
end
return 1
