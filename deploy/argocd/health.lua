-- Argo CD health check for vlmops.io/VLMDeployment (resource.customizations.health.vlmops.io_VLMDeployment).
-- It reads only what the operator writes: status.observedGeneration and the Ready / Progressing / Degraded
-- conditions (operator/vlm_operator/status.py). Argo CD runs it with the base, table, package and a safe os library
-- (argo-cd util/lua/lua.go, runLua); it uses none of them but `ipairs` and `tostring`.
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) ..
    " (observed " .. tostring(observed) .. ")"
  return hs
end

local conditions = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type ~= nil then
      conditions[c.type] = c
    end
  end
end

local function says(c)
  if c.reason ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.message or c.reason or ""
end

-- crash loops, rollbacks and refused specs: waiting will not fix them
local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = says(degraded)
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready)
  return hs
end

local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = says(progressing)
  return hs
end

if ready ~= nil then
  hs.status = "Progressing"
  hs.message = says(ready)
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
