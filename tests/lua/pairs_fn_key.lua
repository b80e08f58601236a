-- expect: no deterministic order
function filter(msg) for k in pairs({[{}] = 1}) do end return true end
