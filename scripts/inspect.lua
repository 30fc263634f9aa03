-- inspect: who holds the lock and for how long (is-locked, status).
-- KEYS[1] = the lock key
-- KEYS[2] = its metadata key, KEYS[3] = its fencing counter (both optional,
--           together: Manager.Inspect passes them, IsLocked does not)
-- KEYS[4] = an election's term record (optional, with KEYS[2] and KEYS[3]:
--           Election.Leader and Observe pass it; see election_term.lua): the
--           counter is then '' unless the record is "token\ncounter", so a
--           new leader whose fencing round has not ended is paired with no
--           term
-- ARGV: none
-- Returns {token, pttl_ms}; token is '' and pttl -2 when the key is missing.
-- With KEYS[2] and KEYS[3], returns {token, pttl_ms, metadata, counter}:
-- the metadata stored beside the key under that token (see acquire.lua),
-- '' when there is none, and the fencing counter, '' when there is none
-- (read whether or not the lock key exists; keys of another type read as
-- none).
local v = redis.call('GET', KEYS[1])
local p = -2
if v == false then
  v = ''
else
  p = redis.call('PTTL', KEYS[1])
end
if KEYS[2] then
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
    if KEYS[4] and redis.pcall('GET', KEYS[4]) ~= v .. '\n' .. c then
      c = ''
    end
  end
  return {v, p, md, c}
end
return {v, p}
