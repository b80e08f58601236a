-- expect: available in hooks
function filter(msg) hub.state.set("k", 1) return true end
