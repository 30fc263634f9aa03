-- topup: restore a held lock's keys on an instance that lost them (a
-- restart without persistence, FLUSHALL, an extension that overtook a
-- straggling acquisition), so that redundancy returns. Sent only after an
-- extension succeeded on a quorum, while the lock is valid, and only to
-- instances that answered that the key was missing. All or none: nothing is
-- set when a key holds another token (no instance holds part of a set).
-- KEYS[1..n] = the lock keys
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds (what is left of the
--           extension's lease, so the key expires no later than the others)
-- Returns the number of keys set, or -1 when a key holds another token.
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[1] then
    return -1
  end
end
local n = 0
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    n = n + 1
  elseif redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    -- ours (checked above): a member of a set whose extension this
    -- instance refused for a missing key; give it the same lease, so
    -- that the set's keys live and expire together
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return n
