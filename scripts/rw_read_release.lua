-- rw_read_release: remove a reader's share and those that ran out by this
-- server's clock (TIME); when no live share is left, delete
-- the readers keys and announce the release to waiters (a writer waits for
-- the last reader).
-- KEYS[1] = the writer key (published: waiters wait on it), KEYS[2] = the
--           readers key (ZSET), KEYS[3] = the writer-waiting mark (unused
--           here), KEYS[4] = the readers' metadata (HASH); see
--           rw_read_acquire.lua
-- ARGV[1] = token
-- ARGV[2] = pub/sub channel to publish the writer key on when no reader is
--           left (optional; a refused PUBLISH is ignored)
-- Returns 1 when our share was removed, 0 when there was none (also for a
-- call with the writer key alone: the no-op that loads this script, see
-- script.primes in scripts.go).
if #KEYS < 4 then
  return 0
end
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: TIME before writes (a no-op later)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
-- Shares that ran out (a crashed reader's) do not keep the last live
-- reader's release from being announced.
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone do
  redis.call('ZREM', KEYS[2], gone[i])
  redis.call('HDEL', KEYS[4], gone[i])
end
if n == 1 and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[4])
  if ARGV[2] then
    redis.pcall('PUBLISH', ARGV[2], KEYS[1])
  end
end
return n
