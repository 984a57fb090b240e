-- wrk's done() hook, shared by the benchmark's scripts: the run's figures as JSON
-- in the file named by WRK_REPORT, so bench/wrk.py reads numbers, not wrk's text.
function done(summary, latency, requests)
  local path = os.getenv("WRK_REPORT")
  if not path then return end
  local errors = summary.errors
  local file = assert(io.open(path, "w"))
  file:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"status_errors": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency.mean, errors.status, errors.connect, errors.read, errors.write, errors.timeout))
  file:close()
end
