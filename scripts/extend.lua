-- extend: make the lease at least the TTL, only while the key holds our
-- token. It never shortens a lease (so extensions that reach an instance
-- out of order, or through another handle of the same token, can only
-- lengthen it) and never re-creates a missing key (see topup.lua).
-- KEYS[1] = the lock key
-- KEYS[2] = its metadata key (optional: only for a lock with metadata); it
--           gets at least the lock key's new TTL when it holds our token
--           (see acquire.lua), and is never re-created here
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- Returns 1 when the key holds the token (its TTL is now at least the TTL),
-- 0 when the key is missing, -1 when another token holds it.
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  local keep = redis.call('PTTL', KEYS[1])
  if keep < tonumber(ARGV[2]) then
    keep = ARGV[2]
  end
  redis.call('PEXPIRE', KEYS[1], keep)
  if KEYS[2] then
    local m = redis.pcall('GET', KEYS[2])
    local pre = #ARGV[1] .. ':' .. ARGV[1] .. '\n'
    if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
      local p = redis.call('PTTL', KEYS[1])
      if p > 0 and redis.call('PTTL', KEYS[2]) < p then
        redis.call('PEXPIRE', KEYS[2], p)
      end
    end
  end
  return 1
end
if v == false then
  return 0
end
return -1
