-- GET /flags/<name> over the 100 seeded flags, at random. The requests are built once per
-- wrk thread, so request() costs wrk no more here than same_path.lua does for /health.
local requests = {}
init = function(args)
  for i = 0, 99 do
    requests[i] = wrk.format("GET", string.format("/flags/bench-%03d", i))
  end
  math.randomseed(os.time())
end
request = function()
  return requests[math.random(0, 99)]
end
