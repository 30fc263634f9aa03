-- acquire: take the lock, or refresh it when it already holds our token
-- (aioredlock re-acquire semantics). A refresh never shortens the lease:
-- another handle of the same token may rely on it.
-- KEYS[1] = the lock key (KeyPrefix + resource)
-- KEYS[2] = its metadata key (optional: only for a lock with metadata)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- ARGV[3] = the metadata (present exactly when KEYS[2] is)
-- The metadata key holds #token ':' token '\n' metadata, so that a reader
-- who knows the lock key's token can tell it from a stale one; it is set
-- with the lock key, to the lock key's TTL (a refresh replaces it).
-- Returns 1 when it set a free key to the token for the TTL; 2 when the key
-- already held the token (its TTL is now at least the TTL); when another
-- token holds it, -2 - PTTL (so -2 - ms left, or -1 for a key without a
-- TTL): the waiter retries when a quorum of the holder's keys expired.
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if KEYS[2] then
    redis.call('SET', KEYS[2], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. ARGV[3], 'PX', ARGV[2])
  end
  return 1
end
if v == ARGV[1] then
  local keep = redis.call('PTTL', KEYS[1])
  if keep < tonumber(ARGV[2]) then
    keep = ARGV[2]
  end
  redis.call('PEXPIRE', KEYS[1], keep)
  if KEYS[2] then
    local p = redis.call('PTTL', KEYS[1])
    if p > 0 then
      redis.call('SET', KEYS[2], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. ARGV[3], 'PX', p)
    end
  end
  return 2
end
return -2 - redis.call('PTTL', KEYS[1])
