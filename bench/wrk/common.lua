-- Shared by the wrk scripts: a per-thread id, the bearer key from the environment, and a
-- done() that prints one machine-readable line for bench/wrk.ts.
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

-- wrk "corrects" its latency histogram for coordinated omission before done() sees it
-- (stats_correct in wrk's stats.c): each latency n ≥ 2·I, with I = duration ÷ ⌊requests ÷
-- connections⌋ µs, adds phantom samples at n − I, n − 2I, … while they stay above I. These
-- closed-loop clients never sent those requests, so the measured ack latencies are restored
-- exactly by undoing that, from the top down (a phantom only ever lands below its source).
-- Returns counts per µs, indexed from latency.min to latency.max.
local function measured_histogram(latency, summary, connections)
  -- wrk 4.1: latency(i) is the i-th non-empty bucket's value (µs) and count; #latency is
  -- their number. (Each call scans from the minimum: O(buckets × range), fine once per run.)
  local corrected = {}
  for i = 1, #latency do
    local v, count = latency(i)
    corrected[v] = count
  end
  local raw = {}
  local per_connection = math.floor(summary.requests / connections)
  local interval = per_connection == 0 and math.huge -- wrk corrected nothing
    or math.floor(summary.duration / per_connection)
  -- Per residue of v mod I: the measured counts at v + I, v + 2I, … that were ≥ 2I.
  local carried = {}
  for v = latency.max, latency.min, -1 do
    local count = corrected[v] or 0
    if v > interval then
      local r = v % interval
      local above = carried[r] or 0
      count = count - above
      if v >= 2 * interval then carried[r] = above + count end
    end
    raw[v] = count
  end
  return raw
end

-- Nearest-rank percentile of a histogram of `count` samples.
local function histogram_percentile(histogram, lo, hi, count, p)
  local rank = math.max(1, math.ceil(p / 100 * count))
  local seen = 0
  for v = lo, hi do
    seen = seen + histogram[v]
    if seen >= rank then return v end
  end
  return hi
end

function done(summary, latency, requests)
  local e = summary.errors
  local connections = tonumber(os.getenv("STEMEDB_WRK_CONNECTIONS") or "")
  local fields = string.format(
    "\"requests\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"non2xx\":%d,\"co_p50_us\":%d,\"co_p99_us\":%d,\"co_p999_us\":%d",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9))
  if connections ~= nil and summary.requests > 0 then
    local lo, hi = latency.min, latency.max
    local raw = measured_histogram(latency, summary, connections)
    local count, sum_us = 0, 0
    for v = lo, hi do
      count = count + raw[v]
      sum_us = sum_us + raw[v] * v
    end
    fields = fields .. string.format(
      ",\"measured\":%d,\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"mean_us\":%.1f,\"busy_share\":%.4f",
      count, histogram_percentile(raw, lo, hi, count, 50),
      histogram_percentile(raw, lo, hi, count, 99), histogram_percentile(raw, lo, hi, count, 99.9),
      sum_us / count, sum_us / (summary.duration * connections))
  end
  io.write("WRK_JSON {" .. fields .. "}\n")
end
