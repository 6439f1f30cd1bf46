-- PUT /flags/<name> {"is_enabled": true|false} over the 100 seeded flags, at random.
-- The token comes from the environment (the benchmark generates a throwaway one). The 200
-- possible requests are built once per wrk thread.
local token = os.getenv("BENCH_API_TOKEN")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
local requests = {}
init = function(args)
  for i = 0, 99 do
    local path = string.format("/flags/bench-%03d", i)
    requests[2 * i] = wrk.format("PUT", path, headers, '{"is_enabled": true}')
    requests[2 * i + 1] = wrk.format("PUT", path, headers, '{"is_enabled": false}')
  end
  math.randomseed(os.time())
end
request = function()
  return requests[math.random(0, 199)]
end
