-- The zero-hop floor: POST /floor does one 4 KiB write + fdatasync on the uWS thread.
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
function request()
  return wrk.format("POST", "/floor", headers, '{"x":1}')
end
