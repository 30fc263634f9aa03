-- extend_many: make the lease of several locks at least the TTL, only when
-- every key still holds our token (never shortened, never re-created).
-- KEYS[1..n] = the lock keys
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- Returns 1 when every key holds the token (each TTL is now at least the
-- TTL); 0 when a key is missing; -1 when a key holds another token (nothing
-- is extended in either case).
local missing = false
for i = 1, #KEYS do
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
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
