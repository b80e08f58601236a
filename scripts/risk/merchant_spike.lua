-- merchant_spike.lua: a risk-control hook for a payments topic or queue.
-- "When a merchant's transaction volume in the last 60 s is five times its
-- usual rate, block the merchant's further payments and alert risk control."
--
-- Try it (runnable: tests/docs/run_docs.py runs these lines after the docs):
--   mqhub script load merchant_spike scripts/risk/merchant_spike.lua
--   mqhub topic create risk-alerts                     # where its alerts go
--   mqhub topic create card-orders --hook merchant_spike
--   mqhub publish card-orders '{"amount":80}' --attr merchant=m-30 --attr amount=80
--   mqhub topic set card-orders --hook ""              # detach it
--
-- (docs/scripting.md "Quick start" shows a spike blocked on a queue.)
--
-- Each payment carries the attribute `merchant` and its amount as the
-- attribute `amount` (or the JSON body's `amount`). The usual rate is the
-- merchant's volume per second over the last hour, measured before the
-- payment; MIN_BASE_RATE stands in for merchants without history.
local SHORT_S = 60            -- the spike window
local LONG_S = 3600           -- the usual-rate window
local FACTOR = 5              -- spike = short rate above FACTOR x usual rate
local MIN_SHORT_VOLUME = 1000 -- ignore spikes smaller than this in SHORT_S
local MIN_BASE_RATE = 1.0     -- amount per second assumed without history
local BLOCK_TTL = 600         -- seconds the merchant stays blocked
local ALERT_TOPIC = "risk-alerts"

local function amount_of(msg)
  local a = tonumber(msg.attrs.amount)
  if a == nil then
    local doc = hub.json.decode(msg.body)
    a = type(doc) == "table" and tonumber(doc.amount) or 0
  end
  return a
end

function on_message(msg)
  local merchant = msg.attrs.merchant
  if merchant == nil then
    return true
  end
  local amount = amount_of(msg)
  local usual = hub.window.rate("volume_long", merchant)
  hub.window.add("volume_short", merchant, amount, SHORT_S)
  hub.window.add("volume_long", merchant, amount, LONG_S)
  local recent = hub.window.sum("volume_short", merchant)
  local limit = FACTOR * math.max(usual, MIN_BASE_RATE)
  if recent < MIN_SHORT_VOLUME or recent / SHORT_S <= limit then
    return true
  end
  local reason = string.format("volume %.0f in %d s is over %d x the usual rate %.2f/s",
                               recent, SHORT_S, FACTOR, usual)
  hub.block{attr = "merchant", value = merchant, ttl = BLOCK_TTL, reason = reason}
  hub.publish(ALERT_TOPIC,
              string.format('{"merchant":"%s","volume":%.2f,"usual_rate":%.4f,"at":%d}',
                            merchant, recent, usual, hub.now()),
              {tags = {"spike"}, attrs = {merchant = merchant, rule = "merchant_spike"}})
  hub.state.set("last_spike:" .. merchant, hub.now())
  return false, reason
end
