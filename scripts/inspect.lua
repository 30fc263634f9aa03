-- inspect: who holds the lock and for how long (is-locked, status).
-- KEYS[1] = the lock key
-- ARGV: none
-- Returns {token, pttl_ms}; token is '' and pttl -2 when the key is missing.
local v = redis.call('GET', KEYS[1])
if v == false then
  return {'', -2}
end
return {v, redis.call('PTTL', KEYS[1])}
