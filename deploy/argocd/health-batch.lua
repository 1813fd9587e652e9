-- Argo CD health check for vlmops.io/VLMBatchJob (resource.customizations.health.vlmops.io_VLMBatchJob).
-- It reads only what the operator writes: status.observedGeneration and the Complete / Failed / Progressing
-- conditions (operator/vlm_operator/batchstatus.py). A finished job is Healthy, a failed one Degraded, a suspended
-- (or Kueue-queued) one Suspended, anything else Progressing with the progress column's figures.
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

local failed = conditions["Failed"]
if failed ~= nil and failed.status == "True" then
  hs.status = "Degraded"
  hs.message = says(failed)
  return hs
end

local complete = conditions["Complete"]
if complete ~= nil and complete.status == "True" then
  hs.status = "Healthy"
  hs.message = says(complete)
  return hs
end

local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "False" and progressing.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = says(progressing)
  return hs
end

hs.status = "Progressing"
if progressing ~= nil then
  hs.message = says(progressing)
else
  hs.message = "Waiting for the Progressing condition"
end
return hs
