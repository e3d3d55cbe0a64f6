-- wrk -t1 -c8 -d10s -s harness/wrk_rotate.lua http://127.0.0.1:PORT/predict/MODULE -- BODY_LIST [CONTENT_TYPE]
--
-- POSTs pre-encoded bodies in rotation: BODY_LIST names one body file per line (written by
-- harness/wrk.py), all read once before the run; CONTENT_TYPE (default application/json) is
-- their Content-Type. An answer counts as bad unless it is HTTP 200
-- with PaddleHub's success status "000". done() prints one JSON line for harness/wrk.py.

local bodies = {}
local next_body = 1
local threads = {}
bad = 0 -- global: done() reads it from each thread's state

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for path in io.lines(args[1]) do
      local file = assert(io.open(path, "rb"))
      bodies[#bodies + 1] = file:read("*a")
      file:close()
   end
   assert(#bodies > 0, "no request bodies in " .. args[1])
   wrk.method = "POST"
   wrk.headers["Content-Type"] = args[2] or "application/json"
end

function request()
   local body = bodies[next_body]
   next_body = next_body % #bodies + 1
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status ~= 200 or not body:find('"status":%s*"000"') then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local bad_answers = 0
   for _, thread in ipairs(threads) do
      bad_answers = bad_answers + thread:get("bad")
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "bad_answers": %d, "socket_errors": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, bad_answers, e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
