{{- define "rke2fleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rke2fleet.labels" -}}
app.kubernetes.io/name: rke2fleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rke2fleet
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rke2fleet.selectorLabels" -}}
app.kubernetes.io/name: rke2fleet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Everything namespaced the operator does (tests/deploy checks these equal deploy/kustomize/base/rbac.yaml):
in the ClusterRole when it watches all namespaces, in a Role per namespace when it watches listed ones.
*/}}
{{- define "rke2fleet.namespacedRules" -}}
# The kinds: Kopf lists and watches them and patches finalizers and its annotations.
- apiGroups: ["rke2fleet.io"]
  resources: ["rke2clusters", "rke2nodes"]
  verbs: ["list", "watch", "patch"]
# Snapshots taken when created (the pre-upgrade one created by the operator); restores read.
- apiGroups: ["rke2fleet.io"]
  resources: ["rke2snapshots"]
  verbs: ["list", "watch", "patch", "create"]
- apiGroups: ["rke2fleet.io"]
  resources: ["rke2restores"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["rke2fleet.io"]
  resources: ["rke2clusters/status", "rke2nodes/status", "rke2snapshots/status", "rke2restores/status"]
  verbs: ["patch"]
# Needed where the OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["rke2fleet.io"]
  resources: ["rke2clusters/finalizers", "rke2nodes/finalizers"]
  verbs: ["update"]
# SSH keys and tokens read by name; token and kubeconfig Secrets created, the latter re-published.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Kopf posts Events (core v1) about handler outcomes.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* Refuse values that would deploy an operator unable to work or two operators acting at once. */}}
{{- define "rke2fleet.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicas) 1) -}}
{{- fail "replicas > 1 needs leaderElection.enabled=true: without it every replica would act on the hosts" -}}
{{- end -}}
{{- if not .Values.watch.allNamespaces -}}
{{- if not .Values.watch.namespaces -}}
{{- fail "watch.allNamespaces=false needs watch.namespaces (the namespaces to watch; a Role is made in each)" -}}
{{- end -}}
{{- range .Values.watch.namespaces -}}
{{- if regexMatch "[*?!,]" . -}}
{{- fail (printf "watch.namespaces: %q is a pattern; list namespace names (each gets a Role)" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
