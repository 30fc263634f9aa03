-- rw_inspect: who holds a read-write lock on this instance (status). It
-- changes nothing.
-- KEYS[1] = the writer key, KEYS[2] = the readers key (ZSET token -> expiry
--           ms), KEYS[3] = the writer-waiting mark, KEYS[4] = the readers'
--           metadata (HASH); see rw_read_acquire.lua
-- ARGV: none
-- Returns {writer token ('' when none), writer PTTL (-2 when none), mark
-- PTTL (-2 when none), r1, ms1, md1, r2, ms2, md2, ...}: each live reader's
-- token, the milliseconds left of its share and its metadata ('' when none).
-- Keys of another type read as none.
local v = redis.pcall('GET', KEYS[1])
local p = -2
if type(v) ~= 'string' then
  v = ''
else
  p = redis.call('PTTL', KEYS[1])
end
local out = {v, p, redis.call('PTTL', KEYS[3])}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rs = redis.pcall('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES')
if type(rs) ~= 'table' or rs.err then
  return out
end
for i = 1, #rs, 2 do
  local md = redis.pcall('HGET', KEYS[4], rs[i])
  if type(md) ~= 'string' then
    md = ''
  end
  out[#out + 1] = rs[i]
  out[#out + 1] = tonumber(rs[i + 1]) - now
  out[#out + 1] = md
end
return out
