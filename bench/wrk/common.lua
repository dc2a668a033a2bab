-- Shared by the wrk scripts: a per-thread id, the bearer key from the environment, and a
-- done() that prints one machine-readable line for bench/http_bench.ts.
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
key = os.getenv("STEMEDB_KEY") or ""
run = os.getenv("STEMEDB_RUN") or "r"
headers = { ["content-type"] = "application/json", ["authorization"] = "Bearer " .. key }
counter = 0
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"socket_errors\":%d,\"non2xx\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.timeout, e.status))
end
