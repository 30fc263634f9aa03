-- release: delete the key only when it holds our token (compare-and-delete),
-- and announce the release to waiters.
-- KEYS[1] = the lock key
-- KEYS[2] = its metadata key (optional: only for a lock with metadata);
--           deleted when it holds our token (see acquire.lua)
-- ARGV[1] = token
-- ARGV[2] = pub/sub channel to publish the key on after a delete (optional;
--           a refused PUBLISH, e.g. an ACL without the channel, is ignored)
-- Returns 1 when deleted, 0 when the key was already gone, -1 when another token holds it.
if KEYS[2] then
  local m = redis.pcall('GET', KEYS[2])
  local pre = #ARGV[1] .. ':' .. ARGV[1] .. '\n'
  if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
    redis.call('DEL', KEYS[2])
  end
end
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
