-- Argo CD health of RKE2Cluster and RKE2Node (rke2fleet.io): both kinds share one status contract. Same rules as kstatus/Flux:
-- status not yet for this generation -> Progressing; Stalled=True -> Degraded;
-- phase Paused -> Suspended; Ready=True -> Healthy; otherwise Progressing with Ready's message.
-- One addition kstatus has no word for: a cluster that lost a node (phase Degraded), or a node that
-- stopped answering or that its cluster no longer counts (phase Unreachable, NotReady), is Degraded
-- while the operator keeps retrying (kstatus: InProgress; Flux: not Ready).
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Reconciliation is paused"
  return hs
end

local ready = condition(status, "Ready")
if status.phase == "Degraded" or status.phase == "NotReady" or status.phase == "Unreachable" then
  hs.status = "Degraded"
  hs.message = text(ready, status.phase)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
