-- Renews an instance's lease: its in-flight slots count for others until
-- the lease ends, so slots of an instance that stopped come back by
-- themselves.
--
-- KEYS[1]      the instances hash
-- ARGV[1..3]   instance id, lease ms, idle ms

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
