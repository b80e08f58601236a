-- expect: field 'randomseed'
function filter(msg) math.randomseed(42) return true end
