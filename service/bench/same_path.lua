-- The URL's own path, through the same Lua request() as the random-flag scripts: every
-- endpoint then costs wrk the same per request, and the load generator, which shares the
-- machine's cores with the service, takes no more from one endpoint's figures than another's.
local req
init = function(args)
  req = wrk.format("GET", wrk.path)
end
request = function()
  return req
end
