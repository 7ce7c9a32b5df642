-- wrk script: POST distinct feedback items with a bearer token from LOOM_TOKEN.
local counter = 0
local token = os.getenv("LOOM_TOKEN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
request = function()
  counter = counter + 1
  local body = string.format(
    '{"kind":"bug","title":"bench report %d %s","body":"steps to reproduce %d","reporter":"r%d"}',
    counter, tostring(math.random(1, 1e9)), counter, counter % 100)
  return wrk.format(nil, nil, nil, body)
end
