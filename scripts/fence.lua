-- fence: round 2 of a fenced acquisition. Raise every counter to the
-- proposed fencing token T, but only while every lock key still holds our
-- token and every counter is below T. Counters never expire.
-- KEYS[1..n]    = the lock keys
-- KEYS[n+1..2n] = their fencing counters
-- ARGV[1] = token, ARGV[2] = T as a decimal string (exact below 2^53), ARGV[3] = n
-- Returns {1, T} when accepted; {0, c} when a counter c >= T refused it;
-- {-1, c} when a lock key no longer holds the token (c = largest counter).
local n = tonumber(ARGV[3])
local t = tonumber(ARGV[2])
local best, bestnum = '0', 0
for i = n + 1, #KEYS do
  local c = redis.call('GET', KEYS[i])
  if c and tonumber(c) > bestnum then
    best, bestnum = c, tonumber(c)
  end
end
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return {-1, best}
  end
end
if bestnum >= t then
  return {0, best}
end
for i = n + 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2])
end
return {1, ARGV[2]}
