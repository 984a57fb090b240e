-- GET /<slug> for slugs picked at random from the file named by SLUGS_FILE,
-- as a browser would (so every visit counts as a click).
local slugs = {}

function init(args)
  for line in io.lines(os.getenv("SLUGS_FILE")) do
    if #line > 0 then slugs[#slugs + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

function request()
  return wrk.format("GET", "/" .. slugs[math.random(#slugs)])
end
