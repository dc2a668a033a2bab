-- One new assertion per request (unique content, so never a cheap duplicate).
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
function request()
  counter = counter + 1
  local body = string.format(
    '{"concept":"bench/%s/t%d/c%d","value":%d,"confidence":0.5,"sources":["wrk"]}',
    run, tid, counter % 10000, counter)
  return wrk.format("POST", "/v1/assert", headers, body)
end
