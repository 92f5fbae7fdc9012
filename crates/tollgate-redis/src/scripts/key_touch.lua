-- Records uses: KEYS[i] (a record, a hash) was last used at ARGV[i]; last
-- use only moves forward, and a record that does not exist (revoked and
-- purged, or a reservation never written) is left alone, not created.
-- The keys of one call share their account's hash tag (one slot).
-- Returns how many records were found.
local found = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    found = found + 1
    local current = redis.call('HGET', key, 'last_used_at')
    if not current or ARGV[i] > current then
      redis.call('HSET', key, 'last_used_at', ARGV[i])
    end
  end
end
return found
