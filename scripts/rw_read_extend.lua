-- rw_read_extend: make a reader's share last at least the TTL from now (by
-- this server's clock), only while it holds one. It never shortens a share
-- and never re-creates a missing one. The writer-waiting mark does not stop
-- it: a reader that holds may keep holding.
-- KEYS[1] = the writer key, KEYS[2] = the readers key (ZSET token -> expiry
--           ms), KEYS[3] = the writer-waiting mark (unused here), KEYS[4] =
--           the readers' metadata (HASH); see rw_read_acquire.lua
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- Expired members (and their metadata) are removed first.
-- Returns 1 when the share is held (it now lasts at least the TTL), 0 when
-- it is missing (expired, or never set here), -1 when a writer key exists
-- on this instance (which only an instance that lost data can show beside
-- a share): the share is then not extended.
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: TIME before writes (a no-op later)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone do
  redis.call('ZREM', KEYS[2], gone[i])
  redis.call('HDEL', KEYS[4], gone[i])
end
local mine = redis.call('ZSCORE', KEYS[2], ARGV[1])
if mine == false then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local exp = now + tonumber(ARGV[2])
if tonumber(mine) > exp then
  exp = mine
end
redis.call('ZADD', KEYS[2], exp, ARGV[1])
local top = tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])
if redis.call('PTTL', KEYS[2]) < top - now then
  redis.call('PEXPIRE', KEYS[2], top - now)
end
if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('PTTL', KEYS[4]) < top - now then
  redis.call('PEXPIRE', KEYS[4], top - now)
end
return 1
