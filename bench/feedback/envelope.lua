-- wrk script: POST Sentry envelopes (one event each, distinct event ids) to
-- /api/<project>/envelope/ with the DSN's key from SENTRY_KEY. CRASHES=1: every
-- event is the same crash (counted on one group: a crash storm); CRASHES=N:
-- events spread over N crash sites (N groups, N feedback items).
local key = os.getenv("SENTRY_KEY")
local crashes = tonumber(os.getenv("CRASHES") or "1")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-sentry-envelope"
wrk.headers["X-Sentry-Auth"] = "Sentry sentry_key=" .. key .. ", sentry_version=7, sentry_client=wrk/1"
local thread_salt = math.random(1, 1e9)
local counter = 0
request = function()
  counter = counter + 1
  local id = string.format("%08x%08x%016x", thread_salt, math.random(0, 0x7fffffff), counter)
  local site = counter % crashes
  local event = string.format(
    '{"event_id":"%s","level":"error","platform":"node","release":"app@1.%d.0",' ..
    '"user":{"id":"user-%d"},"breadcrumbs":{"values":[{"category":"http","message":"GET /api/report/%d"}]},' ..
    '"exception":{"values":[{"type":"TypeError","value":"Cannot read properties of undefined (reading \'x%d\')",' ..
    '"mechanism":{"type":"onuncaughtexception","handled":false},"stacktrace":{"frames":[' ..
    '{"filename":"node:internal/timers","function":"listOnTimeout","lineno":581,"in_app":false},' ..
    '{"filename":"/srv/app/report.js","function":"render","lineno":40,"colno":7,"in_app":true,' ..
    '"context_line":"  return rows.map(cell);","pre_context":["function render(rows) {"],"post_context":["}"]},' ..
    '{"filename":"/srv/app/cells.js","function":"cell%d","lineno":12,"colno":5,"in_app":true,' ..
    '"context_line":"  return row.x.y;"}]}}]}}',
    id, counter % 3, counter % 1000, counter, site, site)
  local body = '{"event_id":"' .. id .. '"}\n{"type":"event","length":' .. #event .. '}\n' .. event .. '\n'
  return wrk.format(nil, nil, nil, body)
end
