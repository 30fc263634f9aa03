-- pttl: the remaining TTL of the lock when it holds our token.
-- KEYS[1] = the lock key
-- KEYS[2] = its metadata key (optional: Attach reads the metadata with it)
-- ARGV[1] = token
-- Returns the PTTL in milliseconds (>= 0, or -1 for a key without TTL) when
-- the key holds the token, -2 when the key is missing, -3 when another token holds it.
-- With KEYS[2], returns {that code, metadata}: the metadata stored beside
-- the key under our token (see acquire.lua), '' when there is none.
local v = redis.call('GET', KEYS[1])
local r
if v == ARGV[1] then
  r = redis.call('PTTL', KEYS[1])
elseif v == false then
  r = -2
else
  r = -3
end
if KEYS[2] then
  local md = ''
  if r >= -1 then
    local m = redis.pcall('GET', KEYS[2])
    local pre = #ARGV[1] .. ':' .. ARGV[1] .. '\n'
    if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
      md = string.sub(m, #pre + 1)
    end
  end
  return {r, md}
end
return r
