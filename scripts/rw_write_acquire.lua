-- rw_write_acquire: take a read-write lock exclusively (the writer), or
-- refresh it when the writer key already holds our token. The writer key is
-- the plain mutex key, so a writer and a mutex of the same name exclude
-- each other; once taken, the writer is extended, released and topped up
-- by the mutex's scripts (extend.lua, release.lua, topup.lua).
-- KEYS[1] = the writer key (KeyPrefix + name): holds the writer's token
-- KEYS[2] = the readers key (a ZSET: reader token -> expiry, in ms of this
--           server's clock); members whose expiry has passed are removed
-- KEYS[3] = the writer-waiting mark (a string: the waiting writer's token)
-- KEYS[4] = the writer key's metadata key (optional: only with metadata)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds
-- ARGV[3] = the mark's lifetime in milliseconds (set when readers refuse us)
-- ARGV[4] = the metadata (present exactly when KEYS[4] is; see acquire.lua)
-- Returns 1 when it set the free writer key (no live reader), 2 when the key
-- already held the token (its TTL is now at least the TTL); -2 - ms when
-- refused: ms is the PTTL of another token's writer key, or, when live
-- readers hold, what is left of the longest reader's share (the mark is
-- then set to our token for ARGV[3] ms, so that new readers wait). A
-- writer that takes the key deletes the mark, whoever set it: while it
-- holds, readers are refused anyway.
-- A yes always writes, even when the lease is already long enough (it is
-- then written back as it was): a read-only replica must answer READONLY,
-- never vote yes on a key its master replicated to it.
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: TIME before writes (a no-op later)
end
local v = redis.call('GET', KEYS[1])
if v == false then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if #top > 0 then
    redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
    return -2 - math.max(tonumber(top[2]) - now, 0)
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if KEYS[4] then
    redis.call('SET', KEYS[4], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. ARGV[4], 'PX', ARGV[2])
  end
  redis.call('DEL', KEYS[3])
  return 1
end
if v == ARGV[1] then
  local keep = redis.call('PTTL', KEYS[1])
  if keep < tonumber(ARGV[2]) then
    keep = ARGV[2]
  end
  redis.call('PEXPIRE', KEYS[1], keep)
  if KEYS[4] then
    local p = redis.call('PTTL', KEYS[1])
    if p > 0 then
      redis.call('SET', KEYS[4], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. ARGV[4], 'PX', p)
    end
  end
  return 2
end
return -2 - redis.call('PTTL', KEYS[1])
