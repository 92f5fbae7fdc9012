-- Writes a key record unless one with this hash exists.
-- KEYS[1] record (hash), ARGV field, value, field, value...
-- Returns 1 written, 0 a record with this hash exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
