-- Removes a list and announces it in one step (a script for the reason
-- allowlist_set.lua gives). KEYS[1] the list's hash; ARGV[1] the changes
-- channel, ARGV[2] the change. Returns whether there was a list.
local deleted = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return deleted
