-- acquire: take the lock, or refresh it when it already holds our token
-- (aioredlock re-acquire semantics).
-- KEYS[1] = the lock key (KeyPrefix + resource)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- Returns 1 when the key now holds the token for the TTL, 0 when another token holds it.
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
