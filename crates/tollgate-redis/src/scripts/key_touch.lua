-- Records a use at ARGV[1]; last use only moves forward.
-- KEYS[1] record (hash). Returns 1 if the record exists.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local current = redis.call('HGET', KEYS[1], 'last_used_at')
if not current or ARGV[1] > current then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
end
return 1
