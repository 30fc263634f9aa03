-- topup: restore a held lock's keys on an instance that lost them (a
-- restart without persistence, FLUSHALL, an extension that overtook a
-- straggling acquisition), so that redundancy returns. Sent only after an
-- extension succeeded on a quorum, while the lock is valid, and only to
-- instances that answered that the key was missing. All or none: nothing is
-- set when a key holds another token (no instance holds part of a set).
-- KEYS[1..n]    = the lock keys
-- KEYS[n+1..2n] = their metadata keys (optional: present exactly when
--                 ARGV[3] is; n is then #KEYS/2)
-- ARGV[1] = token, ARGV[2] = TTL in milliseconds (what is left of the
--           extension's lease, so the key expires no later than the others)
-- ARGV[3] = the metadata (optional): set beside each lock key set here,
--           with the same TTL (see acquire.lua)
-- Returns the number of lock keys set, or -1 when a key holds another token.
local n = #KEYS
if ARGV[3] then
  n = n / 2
end
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[1] then
    return -1
  end
end
local set = 0
for i = 1, n do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    set = set + 1
    if ARGV[3] then
      redis.call('SET', KEYS[n + i], #ARGV[1] .. ':' .. ARGV[1] .. '\n' .. ARGV[3], 'PX', ARGV[2])
    end
  elseif redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    -- ours (checked above): a member of a set whose extension this
    -- instance refused for a missing key; give it the same lease, so
    -- that the set's keys live and expire together
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    if ARGV[3] and redis.call('PTTL', KEYS[n + i]) < tonumber(ARGV[2]) then
      redis.call('PEXPIRE', KEYS[n + i], ARGV[2])
    end
  end
end
return set
