-- release_many: delete every key that holds our token, and announce each
-- release to waiters.
-- KEYS[1..n] = the lock keys
-- ARGV[1] = token
-- ARGV[2] = pub/sub channel to publish each deleted key on (optional;
--           a refused PUBLISH is ignored)
-- Returns the number deleted, or -1 when some key holds another token
-- (keys holding ours are deleted all the same).
local deleted, other = 0, false
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
    if ARGV[2] then
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
