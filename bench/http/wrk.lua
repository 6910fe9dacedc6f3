-- wrk script for bench/run-http.sh: POSTs WRK_BODY (a JSON body) when it is
-- set, GETs otherwise, and prints one machine-readable result line:
--   RESULT <requests/s> <p50 ms> <p99 ms> <requests> <non-2xx+socket errors>
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local errors = e.status + e.connect + e.read + e.write + e.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
