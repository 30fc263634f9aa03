-- rw_read_acquire: take a share of a read-write lock (a reader), or refresh
-- our share when we already hold one. Readers share; each reader's share
-- expires on its own, by this server's clock (TIME), never the client's.
-- KEYS[1] = the writer key (KeyPrefix + name): while it exists, no reader
-- KEYS[2] = the readers key (a ZSET: reader token -> expiry in ms of this
--           server's clock); its own TTL covers the latest expiry
-- KEYS[3] = the writer-waiting mark: while it exists, new readers wait
--           (a reader that already holds a share may refresh it)
-- KEYS[4] = the readers' metadata (a HASH: reader token -> metadata)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- ARGV[3] = the metadata (optional)
-- Expired members (and their metadata) are removed first. A refresh never
-- shortens a share.
-- Returns 1 when it added our share, 2 when it refreshed it; -2 - ms when
-- refused: ms is the PTTL of the writer key, or of the writer-waiting mark
-- (-1 for a key without TTL).
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: TIME before writes (a no-op later)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -2 - redis.call('PTTL', KEYS[1])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone do
  redis.call('ZREM', KEYS[2], gone[i])
  redis.call('HDEL', KEYS[4], gone[i])
end
local mine = redis.call('ZSCORE', KEYS[2], ARGV[1])
if mine == false and redis.call('EXISTS', KEYS[3]) == 1 then
  return -2 - redis.call('PTTL', KEYS[3])
end
local exp = now + tonumber(ARGV[2])
if mine ~= false and tonumber(mine) > exp then
  exp = mine
end
redis.call('ZADD', KEYS[2], exp, ARGV[1])
local top = tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])
if redis.call('PTTL', KEYS[2]) < top - now then
  redis.call('PEXPIRE', KEYS[2], top - now)
end
if ARGV[3] then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
end
if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('PTTL', KEYS[4]) < top - now then
  redis.call('PEXPIRE', KEYS[4], top - now)
end
if mine == false then
  return 1
end
return 2
