-- PUT /flags/<name> {"is_enabled": true|false} over the 100 seeded flags, at random.
-- The token comes from the environment (the benchmark generates a throwaway one).
math.randomseed(os.time())
local token = os.getenv("BENCH_API_TOKEN")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
request = function()
  local body = math.random(0, 1) == 1 and '{"is_enabled": true}' or '{"is_enabled": false}'
  return wrk.format("PUT", string.format("/flags/bench-%03d", math.random(0, 99)), headers, body)
end
