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
-- exactly by undoing that, from the top down (a phantom only ever lands below its source, and
-- only where a bucket is non-empty). Returns the non-empty buckets in ascending order as
-- { values = {...}, counts = {...} }.
local function measured_buckets(latency, summary, connections)
  -- wrk 4.1: latency(i) is the i-th non-empty bucket's value (µs) and count; #latency is
  -- their number. (Each call scans from the minimum: O(buckets × range) in C, once per run.)
  local n = #latency
  local values, counts = {}, {}
  for i = 1, n do
    values[i], counts[i] = latency(i)
  end
  local per_connection = math.floor(summary.requests / connections)
  if per_connection > 0 then -- else wrk corrected nothing
    local interval = math.floor(summary.duration / per_connection)
    -- Per residue of v mod I: the measured counts at v + I, v + 2I, … that were ≥ 2I.
    local carried = {}
    for i = n, 1, -1 do
      local v = values[i]
      if v > interval then
        local r = v % interval
        local above = carried[r] or 0
        counts[i] = counts[i] - above
        if v >= 2 * interval then carried[r] = above + counts[i] end
      end
    end
  end
  return { values = values, counts = counts }
end

-- Nearest-rank percentile of `count` samples in ascending buckets.
local function bucket_percentile(buckets, count, p)
  local rank = math.max(1, math.ceil(p / 100 * count))
  local seen = 0
  for i = 1, #buckets.values do
    seen = seen + buckets.counts[i]
    if seen >= rank then return buckets.values[i] end
  end
  return buckets.values[#buckets.values]
end

function done(summary, latency, requests)
  local e = summary.errors
  local connections = tonumber(os.getenv("STEMEDB_WRK_CONNECTIONS") or "")
  local fields = string.format(
    "\"requests\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"non2xx\":%d,\"co_p50_us\":%d,\"co_p99_us\":%d,\"co_p999_us\":%d",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9))
  if connections ~= nil and summary.requests > 0 then
    local buckets = measured_buckets(latency, summary, connections)
    local count, sum_us = 0, 0
    for i = 1, #buckets.values do
      count = count + buckets.counts[i]
      sum_us = sum_us + buckets.counts[i] * buckets.values[i]
    end
    fields = fields .. string.format(",\"measured\":%d", count)
    if count > 0 then -- none when every request timed out
      fields = fields .. string.format(
        ",\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"mean_us\":%.1f,\"busy_share\":%.4f",
        bucket_percentile(buckets, count, 50), bucket_percentile(buckets, count, 99),
        bucket_percentile(buckets, count, 99.9), sum_us / count,
        sum_us / (summary.duration * connections))
    end
  end
  io.write("WRK_JSON {" .. fields .. "}\n")
end
