-- `latest` lens over concepts written by assert.lua (run STEMEDB_READ_RUN, thread 0).
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
local read_run = os.getenv("STEMEDB_READ_RUN") or "r"
local concepts = tonumber(os.getenv("STEMEDB_READ_CONCEPTS") or "1000")
function request()
  counter = counter + 1
  local path = string.format("/v1/query?concept=bench/%s/t0/c%d&lens=latest", read_run, (counter * 7919) % concepts + 1)
  return wrk.format("GET", path, headers)
end
