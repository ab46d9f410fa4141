-- Counts responses per worker (the fixture answers "worker ID pid PID").
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  local worker = body:match("worker (%d+)")
  if worker then counts[worker] = (counts[worker] or 0) + 1 end
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for worker, n in pairs(thread:get("counts")) do total[worker] = (total[worker] or 0) + n end
  end
  local parts = {}
  for worker, n in pairs(total) do table.insert(parts, worker .. "=" .. n) end
  table.sort(parts)
  io.write("per-worker " .. table.concat(parts, " ") .. "\n")
end
