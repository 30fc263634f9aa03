-- extend_batch: the auto-extension of many locks in one call. Each key's
-- lease becomes at least its TTL, only while it holds its own token (never
-- shortened, never re-created).
-- KEYS[i]    = the lock key of lock i
-- ARGV[2i-1] = the token of lock i, ARGV[2i] = its TTL in milliseconds
-- Returns an array: for each lock, 1 when the key holds its token (its TTL
-- is now at least the TTL), 0 when the key is missing, -1 when another
-- token holds it.
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[2 * i - 1] then
    local keep = redis.call('PTTL', KEYS[i])
    if keep < tonumber(ARGV[2 * i]) then
      keep = ARGV[2 * i]
    end
    redis.call('PEXPIRE', KEYS[i], keep)
    out[i] = 1
  elseif v == false then
    out[i] = 0
  else
    out[i] = -1
  end
end
return out
