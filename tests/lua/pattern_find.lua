-- expect: pattern too complex
function filter(msg) return string.find(string.rep("a", 700), ".-.-.-b") ~= nil end
