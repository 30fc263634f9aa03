-- pttl: the remaining TTL of the lock when it holds our token.
-- KEYS[1] = the lock key
-- ARGV[1] = token
-- Returns the PTTL in milliseconds (>= 0, or -1 for a key without TTL) when
-- the key holds the token, -2 when the key is missing, -3 when another token holds it.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
if v == false then
  return -2
end
return -3
