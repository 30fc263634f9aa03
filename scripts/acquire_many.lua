-- acquire_many: take several locks at once, all or none, and read their
-- fencing counters (round 1 of a fenced or multi-resource acquisition).
-- KEYS[1..n]    = the lock keys
-- KEYS[n+1..2n] = their fencing counters (optional: present only when fenced)
-- then, last, n metadata keys (optional: present exactly when ARGV[4] is)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds, ARGV[3] = n
-- ARGV[4] = the metadata (optional): set beside each lock key, with its
--           TTL, as acquire.lua does (a refresh replaces it)
-- Returns {1, maxCounter} when every key was free and now holds the token
-- for the TTL; {2, maxCounter} when every key now holds the token and some
-- already did before (those are refreshed, never shortened: another handle
-- of the same token may rely on their lease); {0, i, pttl} when key i holds
-- another token, pttl its PTTL (-1 without a TTL; nothing is set then). maxCounter is the largest counter
-- as a decimal string ('0' when none exists or the lock is not fenced).
local n = tonumber(ARGV[3])
local ttl = tonumber(ARGV[2])
local md = ARGV[4]
local last = #KEYS -- the last counter
if md then
  last = #KEYS - n
end
local ours = false
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v then
    if v ~= ARGV[1] then
      return {0, i, redis.call('PTTL', KEYS[i])}
    end
    ours = true
  end
end
for i = 1, n do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) == false then
    if redis.call('PTTL', KEYS[i]) < ttl then
      redis.call('PEXPIRE', KEYS[i], ARGV[2])
    end
  end
  if md then
    local p = redis.call('PTTL', KEYS[i])
    if p > 0 then
      redis.call('SET', KEYS[last + i], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. md, 'PX', p)
    end
  end
end
local best, bestnum = '0', 0
for i = n + 1, last do
  local c = redis.call('GET', KEYS[i])
  if c and tonumber(c) > bestnum then
    best, bestnum = c, tonumber(c)
  end
end
if ours then
  return {2, best}
end
return {1, best}
