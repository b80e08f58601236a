-- vip_router.lua: "send only VIP orders over 1000 to the promotion system".
-- Attach it to the promotion system's subscription as its filter_script. A
-- VIP order carries the tag "vip" or the attribute tier=vip; its amount is
-- the attribute `amount` or the JSON body's `amount`.
local MIN_AMOUNT = 1000

local function is_vip(msg)
  if msg.attrs.tier == "vip" then
    return true
  end
  for _, tag in ipairs(msg.tags) do
    if tag == "vip" then
      return true
    end
  end
  return false
end

function filter(msg)
  if not is_vip(msg) then
    return false
  end
  local amount = tonumber(msg.attrs.amount)
  if amount == nil then
    local doc = hub.json.decode(msg.body)
    amount = type(doc) == "table" and tonumber(doc.amount) or 0
  end
  return amount > MIN_AMOUNT
end
