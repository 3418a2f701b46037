-- Gives back in-flight slots an instance held.
--
-- KEYS[i]      scope i's in-flight hash
-- ARGV[1]      instance id
-- ARGV[1 + i]  slots given back in scope i
--
-- A count that reaches zero (or below: the slots were already dropped
-- because the instance's lease had lapsed) removes the instance's field.

for i = 1, #KEYS do
  local left = redis.call('HINCRBY', KEYS[i], ARGV[1], -tonumber(ARGV[1 + i]))
  if left <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 1
