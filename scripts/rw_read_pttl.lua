-- rw_read_pttl: what is left of a reader's share, by this server's clock.
-- KEYS[1] = the writer key, KEYS[2] = the readers key (ZSET token -> expiry
--           ms), KEYS[3] = the writer-waiting mark, KEYS[4] = the readers'
--           metadata (the last two unused here); see rw_read_acquire.lua
-- ARGV[1] = token
-- Returns the milliseconds left (>= 0) when the share is held, -2 when it
-- is missing or has expired (the codes of pttl.lua).
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if s == false then
  return -2
end
local t = redis.call('TIME')
local left = tonumber(s) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if left <= 0 then
  return -2
end
return left
