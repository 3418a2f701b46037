-- Counts an answered call's tokens in the windows and its cost in the
-- spend of the scopes it was admitted in.
--
-- KEYS[i]      scope i's counters (see admit.lua)
-- ARGV[1..4]   tokens, cost, window ms, idle ms
-- ARGV[5..]    per scope, 2 flags: has a window (1/0), has a budget (1/0)
--
-- A window that has closed opens again with these tokens; a spend counter
-- that does not exist (never admitted, or expired) is left alone: the
-- store's record brings the spend back at the next admission.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, idle = tonumber(ARGV[3]), tonumber(ARGV[4])

local function num(v)
  return tonumber(v) or 0
end

for i = 1, #KEYS do
  local key = KEYS[i]
  local rate, budget = ARGV[3 + 2 * i] == '1', ARGV[4 + 2 * i] == '1'
  if rate and tokens > 0 then
    if now - num(redis.call('HGET', key, 'ws')) >= window then
      redis.call('HSET', key, 'ws', now, 'rq', 0, 'tk', tokens)
    else
      redis.call('HINCRBY', key, 'tk', tokens)
    end
  end
  if budget and cost > 0 then
    local s = redis.call('HMGET', key, 'sp', 'rs', 'pd')
    if s[1] then
      local spent, reset, period = tonumber(s[1]), num(s[2]), num(s[3])
      if reset > 0 and now >= reset then
        spent = 0
        if period > 0 then
          reset = reset + (math.floor((now - reset) / period) + 1) * period
        else
          reset = 0
        end
      end
      redis.call('HSET', key, 'sp', string.format('%.17g', spent + cost), 'rs', reset)
    end
  end
  redis.call('PEXPIRE', key, idle)
end
return 1
