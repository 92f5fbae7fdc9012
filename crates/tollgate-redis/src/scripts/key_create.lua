-- Writes a key record unless one with this hash exists, and announces the
-- new key with PUBLISH ARGV[1] ARGV[2] (the changes channel, the key's
-- change) in the same step, so instances that remembered the hash as
-- unknown forget that at once.
-- KEYS[1] record (hash), ARGV[3..] field, value, field, value...
-- Returns 1 written, 0 a record with this hash exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
