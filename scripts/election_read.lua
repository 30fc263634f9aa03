-- election_read: inspect.lua for an election (Election.Leader, Observe):
-- the holder, its TTL, its metadata (the leader's value) and the term,
-- which counts only when the term record names the holder and the counter.
-- KEYS[1] = the election's lock key, KEYS[2] = its metadata key,
-- KEYS[3] = its fencing counter, KEYS[4] = the term record (see
--           election_term.lua)
-- ARGV: none
-- Returns {token, pttl_ms, metadata, counter} as inspect.lua does, but the
-- counter is '' unless the term record is "token\ncounter".
local v = redis.call('GET', KEYS[1])
local p = -2
if v == false then
  v = ''
else
  p = redis.call('PTTL', KEYS[1])
end
local md, c = '', redis.pcall('GET', KEYS[3])
if type(c) ~= 'string' then
  c = ''
end
if v ~= '' then
  local m = redis.pcall('GET', KEYS[2])
  local pre = #v .. ':' .. v .. '\n'
  if type(m) == 'string' and string.sub(m, 1, #pre) == pre then
    md = string.sub(m, #pre + 1)
  end
  if redis.pcall('GET', KEYS[4]) ~= v .. '\n' .. c then
    c = ''
  end
end
return {v, p, md, c}
