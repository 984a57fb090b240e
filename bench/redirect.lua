-- GET /<slug> for slugs picked at random from the file named by SLUGS_FILE,
-- as a browser would (so every visit counts as a click).
--
-- The slugs are kept as one string of fixed-width lines, not a table of a
-- million strings: LuaJIT's collector would walk such a table over and over,
-- and wrk runs on the same cores as the stack it measures.
local slugs, width, count

function init(args)
  local file = assert(io.open(os.getenv("SLUGS_FILE"), "rb"))
  slugs = file:read("*a")
  file:close()
  width = slugs:find("\n", 1, true)  -- slug length + 1
  count = math.floor(#slugs / width)
  assert(count * width == #slugs, "every slug in SLUGS_FILE must have the same length")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

function request()
  local start = (math.random(count) - 1) * width + 1
  return wrk.format("GET", "/" .. slugs:sub(start, start + width - 2))
end
