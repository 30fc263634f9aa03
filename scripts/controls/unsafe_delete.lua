-- unsafe_delete: TEST-ONLY negative control (internal/testhooks PlainDelete):
-- deletes the key whatever token it holds, as a broken unlock would.
-- KEYS[1] = the lock key
-- ARGV[1] = token (ignored)
-- Returns 1 when a key was deleted, 0 when there was none.
return redis.call('DEL', KEYS[1])
