-- expect: pattern too complex
function filter(msg) return (string.rep("a", 5000):gsub("(a*)*b", "")) ~= "" end
