-- tags_any.lua: a subscription filter that delivers a message when it
-- carries at least one of TAGS.
--   mqhub script load tags_any scripts/filters/tags_any.lua
--   mqhub sub create orders vip --queue vip-orders --filter-script tags_any
local TAGS = { "vip", "priority" }

function filter(msg)
  for _, tag in ipairs(msg.tags) do
    for _, want in ipairs(TAGS) do
      if tag == want then
        return true
      end
    end
  end
  return false
end
