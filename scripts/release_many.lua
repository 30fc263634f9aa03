-- release_many: delete every key that holds our token, and announce each
-- release to waiters.
-- KEYS[1..n]    = the lock keys
-- KEYS[n+1..2n] = their metadata keys (optional: present exactly when
--                 ARGV[3] is); each is deleted when it holds our token
--                 (see acquire.lua)
-- ARGV[1] = token
-- ARGV[2] = pub/sub channel to publish each deleted key on (optional, ''
--           for none; a refused PUBLISH is ignored)
-- ARGV[3] = n (optional: without it, every key is a lock key)
-- Returns the number deleted, or -1 when some key holds another token
-- (keys holding ours are deleted all the same).
local n = #KEYS
if ARGV[3] then
  n = tonumber(ARGV[3])
  local pre = #ARGV[1] .. ':' .. ARGV[1] .. '\n'
  for i = n + 1, #KEYS do
    local m = redis.pcall('GET', KEYS[i])
    if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
      redis.call('DEL', KEYS[i])
    end
  end
end
local pub = ARGV[2] and ARGV[2] ~= ''
local deleted, other = 0, false
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
    if pub then
      redis.pcall('PUBLISH', ARGV[2], KEYS[i])
    end
  elseif v then
    other = true
  end
end
if other then
  return -1
end
return deleted
