-- amount_over.lua: a subscription filter that delivers a message whose amount
-- is over THRESHOLD. The amount is the attribute `amount`, else the field
-- `amount` of a JSON body ({"amount": 1250, ...}).
local THRESHOLD = 1000

local function amount_of(msg)
  local a = tonumber(msg.attrs.amount)
  if a == nil then
    local doc = hub.json.decode(msg.body)
    a = type(doc) == "table" and tonumber(doc.amount) or nil
  end
  return a
end

function filter(msg)
  local a = amount_of(msg)
  return a ~= nil and a > THRESHOLD
end
