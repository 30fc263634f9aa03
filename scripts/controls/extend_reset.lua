-- extend_reset: THE NEGATIVE CONTROL ONLY (testhooks.LatestReplyWins): the
-- extension before leases were never shortened, which resets the TTL even
-- when that shortens it. Not among the scripts loaded on an instance.
-- extend: reset the TTL only while the key holds our token. Never re-creates
-- a key that expired (someone else may have held it meanwhile).
-- KEYS[1] = the lock key
-- ARGV[1] = token, ARGV[2] = new TTL in milliseconds
-- Returns 1 when extended, 0 when the key is missing, -1 when another token holds it.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v == false then
  return 0
end
return -1
