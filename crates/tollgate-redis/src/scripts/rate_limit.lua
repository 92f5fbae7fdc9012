-- GCRA per second plus a daily quota, checked and consumed in one step,
-- for one or more checks in order (concurrent checks coalesced into one
-- call). Mirrors tollgate_core::rate_limit::KeyState::check exactly; a key
-- named twice sees the first check's result, as if they came one after
-- the other at the same instant.
--
-- Times and counts are u64, beyond a double's 53 exact bits, so each is
-- held as two numbers: hi (units of 1e9) and lo (the remainder below 1e9).
-- For times that is seconds and nanoseconds.
--
-- KEYS[i] the i-th check's state, a string "<tat hi> <tat lo> <day> <used hi> <used lo>"
-- ARGV[9(i-1)+1 .. 9i] the i-th check's arguments:
--   1..2 cost * interval (ns, saturated to u64) as hi, lo
--   3..4 burst * interval (ns, saturated) as hi, lo
--   5..6 the daily quota as hi, lo, or '-', '-' for none
--   7..8 the cost as hi, lo
--   9 1 if the cost can never be admitted (known from the limits alone)
-- Returns, per check, the state as it was (false if none), Redis TIME
-- (seconds, microseconds; one reading for the call), and 1 if the request
-- was admitted (and its cost consumed).
-- The clock is Redis TIME, so instances with skewed clocks agree.

local BASE = 1000000000
local MAX_HI, MAX_LO = 18446744073, 709551615 -- u64::MAX

local function less(a_hi, a_lo, b_hi, b_lo)
  return a_hi < b_hi or (a_hi == b_hi and a_lo < b_lo)
end

local function add(a_hi, a_lo, b_hi, b_lo) -- saturating, like Rust's saturating_add
  local hi, lo = a_hi + b_hi, a_lo + b_lo
  if lo >= BASE then
    hi, lo = hi + 1, lo - BASE
  end
  if less(MAX_HI, MAX_LO, hi, lo) then
    return MAX_HI, MAX_LO
  end
  return hi, lo
end

-- One check: KEYS' state `key`, its arguments from ARGV[base + 1].
local function check(key, base, time, now_hi, now_lo)
  local stored = redis.call('GET', key)
  local tat_hi, tat_lo, day, used_hi, used_lo = 0, 0, 0, 0, 0
  if stored then
    local a, b, c, d, e = string.match(stored, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
    tat_hi, tat_lo, day, used_hi, used_lo = tonumber(a), tonumber(b), tonumber(c), tonumber(d), tonumber(e)
  end

  local inc_hi, inc_lo = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local cap_hi, cap_lo = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local has_quota = ARGV[base + 5] ~= '-'
  local cost_hi, cost_lo = tonumber(ARGV[base + 7]), tonumber(ARGV[base + 8])

  local today = math.floor(now_hi / 86400)
  local today_hi, today_lo = 0, 0
  if day >= today then
    today_hi, today_lo = used_hi, used_lo
  end

  -- tat = max(stored tat, now); new_tat = tat + cost * interval.
  local t_hi, t_lo = tat_hi, tat_lo
  if less(t_hi, t_lo, now_hi, now_lo) then
    t_hi, t_lo = now_hi, now_lo
  end
  local new_hi, new_lo = add(t_hi, t_lo, inc_hi, inc_lo)
  -- The per-second wait (new_tat - capacity - now) is positive exactly when
  -- new_tat passes now + capacity (saturated: past u64::MAX nothing waits).
  local limit_hi, limit_lo = add(now_hi, now_lo, cap_hi, cap_lo)
  local refused = ARGV[base + 9] == '1' or less(limit_hi, limit_lo, new_hi, new_lo)
  local after_hi, after_lo = add(today_hi, today_lo, cost_hi, cost_lo)
  if has_quota and not refused then
    refused = less(tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6]), after_hi, after_lo)
  end

  if refused then
    return {stored, time[1], time[2], 0}
  end
  if cost_hi == 0 and cost_lo == 0 then -- a query consumes nothing
    return {stored, time[1], time[2], 1}
  end

  local counting_day = nil
  if has_quota then
    counting_day = math.max(day, today)
    used_hi, used_lo = after_hi, after_lo
    day = counting_day
  elseif day >= today and (used_hi > 0 or used_lo > 0) then
    counting_day = day -- a count kept from a plan with a quota
  end
  local state = string.format('%.0f %d %d %.0f %d', new_hi, new_lo, day, used_hi, used_lo)

  -- Keep the key until it is idle: until the TAT, and until the end of the
  -- day whose count it holds. (A TAT far ahead loses sub-millisecond
  -- precision in this double; the +1 covers it.)
  local keep_ms = math.ceil(((new_hi - now_hi) * BASE + (new_lo - now_lo)) / 1000000)
  if counting_day then
    keep_ms = math.max(keep_ms, ((counting_day + 1) * 86400 - now_hi) * 1000)
  end
  keep_ms = keep_ms + 1
  -- Past a century the key may as well be kept forever; PX would overflow.
  if keep_ms < 3153600000000 then
    redis.call('SET', key, state, 'PX', keep_ms)
  else
    redis.call('SET', key, state)
  end
  return {stored, time[1], time[2], 1}
end

local time = redis.call('TIME')
local now_hi, now_lo = tonumber(time[1]), tonumber(time[2]) * 1000
local replies = {}
for i, key in ipairs(KEYS) do
  replies[i] = check(key, (i - 1) * 9, time, now_hi, now_lo)
end
return replies
