-- 1000 new assertions per request.
dofile(os.getenv("STEMEDB_WRK_DIR") .. "/common.lua")
local parts = {}
function request()
  counter = counter + 1
  for i = 1, 1000 do
    parts[i] = string.format('{"concept":"bench/%s/t%d/b%d","value":%d,"confidence":0.5}',
      run, tid, (counter * 1000 + i) % 20000, counter * 1000 + i)
  end
  return wrk.format("POST", "/v1/assert", headers, '{"assertions":[' .. table.concat(parts, ",") .. ']}')
end
