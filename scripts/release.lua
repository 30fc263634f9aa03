-- release: delete the key only when it holds our token (compare-and-delete),
-- and announce the release to waiters.
-- KEYS[1] = the lock key
-- ARGV[1] = token
-- ARGV[2] = pub/sub channel to publish the key on after a delete (optional;
--           a refused PUBLISH, e.g. an ACL without the channel, is ignored)
-- Returns 1 when deleted, 0 when the key was already gone, -1 when another token holds it.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] then
    redis.pcall('PUBLISH', ARGV[2], KEYS[1])
  end
  return 1
end
if v == false then
  return 0
end
return -1
