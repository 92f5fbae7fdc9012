-- Sets a list and announces it in one step. A script, not MULTI: on a
-- cluster a transaction's PUBLISH would be routed by its channel name as
-- if it were a key, into another slot; inside a script it is no key.
-- KEYS[1] the list's hash; ARGV[1] version, ARGV[2] list,
-- ARGV[3] the changes channel, ARGV[4] the change.
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'list', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
