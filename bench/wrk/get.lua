-- GET one fixed path (STEMEDB_PATH) with the bearer key: lens and subtree read benchmarks.
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
local p = os.getenv("STEMEDB_PATH") or "/v1/health"
function request()
  return wrk.format("GET", p, headers)
end
