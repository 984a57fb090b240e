-- GET /<slug> for slugs from the file named by SLUGS_FILE, as a browser would (so
-- every visit counts as a click). SLUGS_ORDER=random (default) picks a line at
-- random per request (a uniform mix); SLUGS_ORDER=sequence walks the file in order
-- from a random line, for a file that is already a drawn sequence (bench/mixes.py's
-- Zipf mix).
--
-- The slugs are kept as one string of fixed-width lines, not a table of a
-- million strings: LuaJIT's collector would walk such a table over and over,
-- and wrk runs on the same cores as the stack it measures.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local slugs, width, count, position
local sequence = os.getenv("SLUGS_ORDER") == "sequence"

function init(args)
  local file = assert(io.open(os.getenv("SLUGS_FILE"), "rb"))
  slugs = file:read("*a")
  file:close()
  width = slugs:find("\n", 1, true)  -- slug length + 1
  count = math.floor(#slugs / width)
  assert(count * width == #slugs, "every slug in SLUGS_FILE must have the same length")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  position = math.random(count) - 1
end

wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

-- Everything after the path, made once: wrk.format builds a table and formats
-- each header on every call, and wrk shares the cores with the stack it measures
-- (docs/performance.md).
local after_path

function request()
  local line
  if sequence then
    line = position
    position = (position + 1) % count
  else
    line = math.random(count) - 1
  end
  local start = line * width + 1
  if not after_path then
    after_path = wrk.format("GET", "/"):sub(#"GET /" + 1)
  end
  return "GET /" .. slugs:sub(start, start + width - 2) .. after_path
end
