-- GET /flags/<name> over the 100 seeded flags, at random.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/flags/bench-%03d", math.random(0, 99)))
end
