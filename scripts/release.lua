-- release: delete the key only when it holds our token (compare-and-delete).
-- KEYS[1] = the lock key
-- ARGV[1] = token
-- Returns 1 when deleted, 0 when the key was already gone, -1 when another token holds it.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if v == false then
  return 0
end
return -1
