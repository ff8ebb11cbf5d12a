-- wrk script: POST the bench's chat completion (JSON, or a stream with WRK_STREAM=1).
--   wrk -t1 -c32 -d10s -s bench/wrk_chat.lua http://127.0.0.1:8080/v1/chat/completions
local stream = os.getenv("WRK_STREAM") == "1"
local turn = string.rep("Tell me about connection pools. ", 20)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "bench-key")
wrk.body = '{"model":"gpt-4o-mini","max_tokens":64,"stream":' .. tostring(stream)
  .. ',"messages":[{"role":"system","content":"You are a helpful assistant."},'
  .. '{"role":"user","content":"' .. turn .. '"}]}'

-- The 95th percentile too (wrk's --latency prints 50/75/90/99): bench/wrk.py reads it.
done = function(summary, latency, requests)
  io.write(string.format("p95_us %d\n", latency:percentile(95)))
end
