-- The load generator's ceiling against a trivial route.
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
function request()
  return wrk.format("GET", "/ping")
end
