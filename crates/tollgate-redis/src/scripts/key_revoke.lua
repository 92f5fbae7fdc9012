-- Revokes a key at ARGV[1] unless an earlier revocation time is set.
-- KEYS[1] record (hash). Returns the record's fields, or nil if unknown.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local current = redis.call('HGET', KEYS[1], 'revoked_at')
if not current or ARGV[1] < current then
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
