-- expect: pattern too complex
function filter(msg)
  for w in string.gmatch(string.rep("ab", 20000), "a-b-a-b-c") do return true end
  return false
end
