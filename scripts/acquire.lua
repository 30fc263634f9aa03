-- acquire: take the lock, or refresh it when it already holds our token
-- (aioredlock re-acquire semantics). A refresh never shortens the lease:
-- another handle of the same token may rely on it.
-- KEYS[1] = the lock key (KeyPrefix + resource)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- Returns 1 when it set a free key to the token for the TTL; 2 when the key
-- already held the token (its TTL is now at least the TTL); when another
-- token holds it, -2 - PTTL (so -2 - ms left, or -1 for a key without a
-- TTL): the waiter retries when a quorum of the holder's keys expired.
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 2
end
return -2 - redis.call('PTTL', KEYS[1])
