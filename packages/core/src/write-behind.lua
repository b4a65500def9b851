-- Write-behind: records the write in the stream its consumers flush to the database, in the same
-- atomic step as the cache write. set.lua is appended to this file when it is loaded (see
-- write-behind.ts), so the entry is written exactly as every other write writes it.
-- KEYS[1] entry hash, KEYS[2] stream (single Redis only: on a Cluster they are in different slots).
-- ARGV 1-12 as set.lua; ARGV[13] the key as the application named it.
redis.call('XADD', KEYS[2], '*', 'k', ARGV[13], 'c', ARGV[3], 'v', ARGV[2])
