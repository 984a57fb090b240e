-- Plain GETs of the URL given (the nginx static 308 baseline), reported as JSON.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
