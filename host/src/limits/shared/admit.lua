-- Admits one request in every scope it is counted in, or refuses it, in
-- one atomic step: budgets first, then in-flight slots, then the
-- per-minute windows; nothing is counted unless every scope admits.
--
-- KEYS[1]      the instances hash (instance id -> lease end, ms)
-- KEYS[2i]     scope i's counters: ws (window start), rq, tk (requests and
--              tokens in the window), sp (spend this period), rs (period
--              end, 0 = never), rr (latest record period end seen), pd
--              (period length, 0 = none)
-- KEYS[2i+1]   scope i's in-flight hash (instance id -> slots held)
-- ARGV[1..5]   instance id, hold a slot (1/0), window ms, idle ms, lease ms
-- ARGV[6..]    per scope, 7 values: rpm, tpm, parallel (-1 = none),
--              max budget ('' = none), the record's spend, its period end
--              (0 = none) and the period length (0 = none)
--
-- Answers {0, ...per scope: left requests, left tokens (-1 = no limit), ms
-- until the window closes (-1 = no window), spend this period ('' = no
-- budget)},
-- {1, scope, spent, period end} for a spent budget, {2, scope} for a full
-- in-flight limit, {3, scope, 0 requests | 1 tokens, ms until the window
-- closes, left requests, left tokens} for a rate limit.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, hold = ARGV[1], ARGV[2] == '1'
local window, idle, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = (#ARGV - 5) / 7

local function num(v)
  return tonumber(v) or 0
end

local function arg(i, k)
  return ARGV[5 + (i - 1) * 7 + k]
end

-- Each budget's spend, as text: Redis would turn a Lua number into an integer.
local spent_of = {}

-- Budgets: the counter takes in the record the caller read from the store
-- (a newer period replaces it, a higher spend is spend it had not seen),
-- then starts a new period when this one has ended.
for i = 1, n do
  local max = arg(i, 4)
  if max ~= '' then
    local key = KEYS[2 * i]
    local r_spend, r_reset, period = tonumber(arg(i, 5)), tonumber(arg(i, 6)), tonumber(arg(i, 7))
    local s = redis.call('HMGET', key, 'sp', 'rs', 'rr')
    local spent, reset, seen
    if s[1] then
      spent, reset, seen = tonumber(s[1]), num(s[2]), num(s[3])
      if not (r_reset > 0 and reset > 0 and r_reset < reset) then
        if r_reset > seen then
          if r_reset == reset then
            spent = math.max(spent, r_spend)
          else
            spent = r_spend
          end
          reset, seen = r_reset, r_reset
        elseif r_spend > spent then
          spent = r_spend
        end
      end
    else
      spent, reset, seen = r_spend, r_reset, r_reset
      if reset == 0 and period > 0 then
        reset = now + period
      end
    end
    if reset > 0 and now >= reset then
      spent = 0
      if period > 0 then
        reset = reset + (math.floor((now - reset) / period) + 1) * period
      else
        reset = 0
      end
    end
    redis.call('HSET', key, 'sp', string.format('%.17g', spent), 'rs', reset, 'rr', seen, 'pd', period)
    redis.call('PEXPIRE', key, idle)
    spent_of[i] = string.format('%.17g', spent)
    -- The float error of summed prices (BUDGET_TOLERANCE in limits/mod.rs).
    if spent >= tonumber(max) - math.abs(tonumber(max)) * 1e-9 then
      return {1, i, spent_of[i], reset}
    end
  end
end

-- In-flight slots: the slots of instances whose lease has ended (they
-- stopped without giving them back) no longer count.
if hold then
  for i = 1, n do
    local limit = tonumber(arg(i, 3))
    if limit >= 0 then
      local key = KEYS[2 * i + 1]
      local held = redis.call('HGETALL', key)
      local total = 0
      for j = 1, #held, 2 do
        local who, count = held[j], tonumber(held[j + 1])
        if who ~= me and num(redis.call('HGET', KEYS[1], who)) < now then
          redis.call('HDEL', key, who)
          redis.call('HDEL', KEYS[1], who)
          count = 0
        end
        total = total + math.max(count, 0)
      end
      if total >= limit then
        return {2, i}
      end
    end
  end
end

-- Per-minute windows: one opens with the first request after the last
-- one closed and lasts `window` ms.
local left = {}
for i = 1, n do
  local rpm, tpm = tonumber(arg(i, 1)), tonumber(arg(i, 2))
  if rpm >= 0 or tpm >= 0 then
    local key = KEYS[2 * i]
    local w = redis.call('HMGET', key, 'ws', 'rq', 'tk')
    local start, rq, tk = num(w[1]), num(w[2]), num(w[3])
    if now - start >= window then
      start, rq, tk = now, 0, 0
      redis.call('HSET', key, 'ws', now, 'rq', 0, 'tk', 0)
    end
    local retry = start + window - now
    local left_rq, left_tk = -1, -1
    if rpm >= 0 then left_rq = math.max(rpm - rq, 0) end
    if tpm >= 0 then left_tk = math.max(tpm - tk, 0) end
    if rpm >= 0 and rq >= rpm then
      return {3, i, 0, retry, left_rq, left_tk}
    end
    if tpm >= 0 and tk >= tpm then
      return {3, i, 1, retry, left_rq, left_tk}
    end
    left[i] = {left_rq, left_tk, retry}
  end
end

-- Every scope admits: count the request.
local out = {0}
for i = 1, n do
  if hold and tonumber(arg(i, 3)) >= 0 then
    local key = KEYS[2 * i + 1]
    redis.call('HINCRBY', key, me, 1)
    redis.call('PEXPIRE', key, idle)
  end
  local l = left[i]
  if l then
    redis.call('HINCRBY', KEYS[2 * i], 'rq', 1)
    redis.call('PEXPIRE', KEYS[2 * i], idle)
    if l[1] >= 0 then
      out[#out + 1] = l[1] - 1
    else
      out[#out + 1] = -1
    end
    out[#out + 1] = l[2]
    out[#out + 1] = l[3]
  else
    out[#out + 1] = -1
    out[#out + 1] = -1
    out[#out + 1] = -1
  end
  out[#out + 1] = spent_of[i] or ''
end
if hold then
  redis.call('HSET', KEYS[1], me, now + lease)
  redis.call('PEXPIRE', KEYS[1], idle)
end
return out
