-- extend_many: reset the TTL of several locks, only when every key still
-- holds our token (never re-creates an expired key).
-- KEYS[1..n] = the lock keys
-- ARGV[1] = token, ARGV[2] = new TTL in milliseconds
-- Returns 1 when every key was extended; 0 when a key is missing; -1 when a
-- key holds another token (nothing is extended in either case).
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
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
