-- Revokes a key at ARGV[1] unless an earlier revocation time is set.
-- KEYS[1] record (hash). Returns the record's fields, or nil if unknown.
-- A change is announced with PUBLISH ARGV[2] ARGV[3] (the changes channel,
-- the key's change), in the same step as the write.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local current = redis.call('HGET', KEYS[1], 'revoked_at')
if not current or ARGV[1] < current then
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
