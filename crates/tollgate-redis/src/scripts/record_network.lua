-- A key's network history: one sorted set of networks scored by last use
-- (unix milliseconds). KEYS[1] the set; ARGV network, at, recent (ms),
-- capacity, ttl (ms). Returns 0 first use, 1 known, 2 new.
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
local at = tonumber(ARGV[2])
local result = 2
if count == 0 then
  result = 0
elseif previous and at - tonumber(previous) <= tonumber(ARGV[3]) then
  result = 1
end
if not previous or tonumber(previous) < at then
  redis.call('ZADD', KEYS[1], at, ARGV[1])
end
-- Keeps the `capacity` most recently used.
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return result
