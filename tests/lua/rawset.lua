-- expect: global 'rawset'
function filter(msg) rawset(string, "rep", nil) return true end
