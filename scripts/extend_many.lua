-- extend_many: make the lease of several locks at least the TTL, only when
-- every key still holds our token (never shortened, never re-created).
-- KEYS[1..n]    = the lock keys
-- KEYS[n+1..2n] = their metadata keys (optional: present exactly when
--                 ARGV[3] is); each gets at least its lock key's new TTL
--                 when it holds our token (see extend.lua)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- ARGV[3] = n (optional: without it, every key is a lock key)
-- Returns 1 when every key holds the token (each TTL is now at least the
-- TTL); 0 when a key is missing; -1 when a key holds another token (nothing
-- is extended in either case).
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
local n = #KEYS
if ARGV[3] then
  n = tonumber(ARGV[3])
end
local missing = false
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v == false then
    missing = true
  elseif v ~= ARGV[1] then
    return -1
  end
end
if missing then
  return 0
end
local ttl = tonumber(ARGV[2])
local pre = #ARGV[1] .. ':' .. ARGV[1] .. '\n'
for i = 1, n do
  local keep = redis.call('PTTL', KEYS[i])
  if keep < ttl then
    keep = ARGV[2]
  end
  redis.call('PEXPIRE', KEYS[i], keep)
  if ARGV[3] then
    local m = redis.pcall('GET', KEYS[n + i])
    if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
      local p = redis.call('PTTL', KEYS[i])
      if p > 0 and redis.call('PTTL', KEYS[n + i]) < p then
        redis.call('PEXPIRE', KEYS[n + i], p)
      end
    end
  end
end
return 1
