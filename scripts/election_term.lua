-- election_term: record which leader a term belongs to, once its fencing
-- round has raised the counter to the term (Election.Campaign). Leader
-- counts an instance's (holder, counter) pair only when this record names
-- both, so a new leader whose fencing round has not ended yet (its key is
-- set, the counter still holds the previous leader's term) is no leader.
-- KEYS[1] = the election's lock key
-- KEYS[2] = the term record (never expires, like the fencing counter)
-- ARGV[1] = the leader's token, ARGV[2] = its term as a decimal string
-- Returns 1 when the lock key holds the token (the record is now
-- "token\nterm"), 0 when it does not (nothing is written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1] .. '\n' .. ARGV[2])
return 1
