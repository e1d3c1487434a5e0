-- wrk script for bench/intake.py: POST a real-shaped Z-API text message with
-- a unique messageId per request; keep the event ids the server answered 2xx.
-- BENCH_BODY_HEAD .. <unique id> .. BENCH_BODY_TAIL is the body.
local head = os.getenv("BENCH_BODY_HEAD")
local tail = os.getenv("BENCH_BODY_TAIL")
local prefix = os.getenv("BENCH_ID_PREFIX")
local token = os.getenv("BENCH_TOKEN")
local ids_file = os.getenv("BENCH_IDS_FILE")
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  ids = {}
  accepted = 0
  headers = {["Content-Type"] = "application/json", ["z-api-token"] = token}
end

function request()
  counter = counter + 1
  local body = head .. prefix .. "-" .. tid .. "-" .. counter .. tail
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    accepted = accepted + 1
    ids[accepted] = body:match('"event_id":%s*(%d+)')
  end
end

function done(summary, latency, requests)
  local out = io.open(ids_file, "w")
  local total = 0
  for _, thread in ipairs(threads) do
    local thread_ids = thread:get("ids")
    local n = thread:get("accepted")
    total = total + n
    for i = 1, n do
      out:write(tostring(thread_ids[i]), "\n")
    end
  end
  out:close()
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "accepted": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, total,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
