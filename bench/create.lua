-- POST / with a new URL on every request, authenticated with API_KEY (so the
-- anonymous rate limits do not apply).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local counter = 0
local thread_tag = ""

function setup(thread)
  thread:set("tag", tostring(math.random(1, 1e9)))
end

function init(args)
  thread_tag = tag
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("API_KEY") or "")

function request()
  counter = counter + 1
  local body = string.format('{"url": "https://example.com/bench/%s/%d"}', thread_tag, counter)
  return wrk.format(nil, nil, nil, body)
end
