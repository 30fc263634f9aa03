-- pttl_many: the smallest remaining TTL of several locks holding our token.
-- KEYS[1..n] = the lock keys
-- ARGV[1] = token
-- Returns the smallest PTTL in milliseconds when every key holds the token;
-- -2 when a key is missing; -3 when a key holds another token.
local least = -1
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v == false then
    return -2
  elseif v ~= ARGV[1] then
    return -3
  end
  local p = redis.call('PTTL', KEYS[i])
  if least < 0 or p < least then
    least = p
  end
end
return least
