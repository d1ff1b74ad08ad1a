{{/*
Names, labels and the rendered settings, shared by every template.
*/}}

{{- define "labspace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "labspace.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "labspace.hub.fullname" -}}{{ include "labspace.fullname" . }}-hub{{- end }}
{{- define "labspace.proxy.fullname" -}}{{ include "labspace.fullname" . }}-proxy{{- end }}
{{- define "labspace.proxy-api.fullname" -}}{{ include "labspace.fullname" . }}-proxy-api{{- end }}
{{- define "labspace.proxy-public.fullname" -}}{{ include "labspace.fullname" . }}-proxy-public{{- end }}
{{- define "labspace.config.fullname" -}}{{ include "labspace.fullname" . }}-config{{- end }}
{{- define "labspace.secret.fullname" -}}{{ include "labspace.fullname" . }}-secret{{- end }}
{{- define "labspace.hub-data.fullname" -}}{{ include "labspace.fullname" . }}-hub-data{{- end }}
{{- define "labspace.workspaces.fullname" -}}{{ include "labspace.fullname" . }}-workspaces{{- end }}

{{- define "labspace.hub.serviceAccountName" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- default (include "labspace.hub.fullname" .) .Values.hub.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.hub.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "component" "hub"). */}}
{{- define "labspace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "labspace.selectorLabels" . }}
{{- end }}

{{/* The labels a selector uses (a subset of the pod's). */}}
{{- define "labspace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "labspace.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* KubeSpawner's workspace pods (spawners/kube.py COMMON_LABELS + component). */}}
{{- define "labspace.workspaceLabels" -}}
app.kubernetes.io/name: labspace
app.kubernetes.io/component: workspace
{{- end }}

{{- define "labspace.image" -}}
{{- printf "%s:%s" .name (.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{- define "labspace.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The settings keys that hold secrets (x-secret in the settings schema,
labspace.settings.secret_paths()): moved out of the ConfigMap into the Secret,
under their own dotted name, and given to the hub as LABSPACE_<KEY>.
*/}}
{{- define "labspace.secretPaths" -}}
- hub.db_url
- auth.admin_password
- auth.user_password
- auth.client_secret
- accounting.db_url
- catalog.db_url
- data.db_url
{{- end }}

{{/* Labspace's managed services and their default ports (each services/NAME/settings.schema.json). */}}
{{- define "labspace.serviceDefaults" -}}
accounting: 8010
catalog: 8011
data: 8012
{{- end }}

{{/*
The settings with the chart's defaults and forced keys, secrets included
(YAML; `include ... | fromYaml`). Use labspace.settings for the ConfigMap.
*/}}
{{- define "labspace.settingsWithSecrets" -}}
{{- $user := deepCopy (.Values.labspace | default dict) }}
{{- include "labspace.refuseChartKeys" $user }}
{{- $hubDefaults := dict "cleanup_servers" false }}
{{- if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $scheme := ternary "https" "http" (gt (len .Values.ingress.tls) 0) }}
{{- $_ := set $hubDefaults "public_url" (printf "%s://%s%s" $scheme (first .Values.ingress.hosts) (dig "hub" "base_url" "/" $user)) }}
{{- end }}
{{- $s := mergeOverwrite (dict "hub" $hubDefaults "backend" (dict "type" "kubernetes")) $user }}
{{- if and (eq $s.backend.type "kubernetes") (not (dig "backend" "kubernetes" "namespace" "" $s)) }}
{{- $kube := $s.backend.kubernetes | default dict }}
{{- $_ := set $kube "namespace" .Release.Namespace }}
{{- $_ := set $s.backend "kubernetes" $kube }}
{{- end }}
{{- $_ := set $s "data_dir" "/srv/labspace/data" }}
{{- $_ := set $s.hub "hub_ip" "0.0.0.0" }}
{{- $_ := set $s.hub "connect_host" (include "labspace.hub.fullname" .) }}
{{- $apiPort := dig "hub" "proxy_api_port" 8001 $s | int }}
{{- $_ := set $s.hub "proxy_api_url" (printf "http://%s:%d" (include "labspace.proxy-api.fullname" .) $apiPort) }}
{{- $publicPort := dig "hub" "port" 8000 $s | int }}
{{- $_ := set $s.hub "proxy_url" (printf "http://%s:%d" (include "labspace.proxy-public.fullname" .) $publicPort) }}
{{- toYaml $s }}
{{- end }}

{{/* Keys the chart sets: given under `labspace:`, they stop the render with the reason. */}}
{{- define "labspace.refuseChartKeys" -}}
{{- if hasKey . "data_dir" }}
{{- fail "labspace.data_dir: set by the chart (/srv/labspace/data, the hub's volume); leave it out (hub.db.pvc sizes the volume)" }}
{{- end }}
{{- $hub := .hub | default dict }}
{{- if hasKey $hub "hub_ip" }}
{{- fail "labspace.hub.hub_ip: set by the chart (0.0.0.0: the hub listens on its pod's address); leave it out" }}
{{- end }}
{{- if hasKey $hub "connect_host" }}
{{- fail "labspace.hub.connect_host: set by the chart (the hub Service, <fullname>-hub); leave it out" }}
{{- end }}
{{- if hasKey $hub "proxy_api_url" }}
{{- fail "labspace.hub.proxy_api_url: set by the chart (the proxy's API Service, <fullname>-proxy-api); leave it out" }}
{{- end }}
{{- if hasKey $hub "proxy_url" }}
{{- fail "labspace.hub.proxy_url: set by the chart (the proxy's public Service, <fullname>-proxy-public); leave it out" }}
{{- end }}
{{- /* one machine's keys: the hub would refuse them beside a proxy run apart */}}
{{- if ne (dig "tls" "type" "none" $hub) "none" }}
{{- fail "labspace.hub.tls: Caddy's HTTPS is for one machine; leave hub.tls out and use ingress.tls (with cert-manager, see the chart's README)" }}
{{- end }}
{{- if $hub.proxy_command }}
{{- fail "labspace.hub.proxy_command: the chart runs the proxy in its own Deployment; leave it out (proxy.chp.image picks its image)" }}
{{- end }}
{{- end }}

{{/* The settings of the ConfigMap: no secret key at all. */}}
{{- define "labspace.settings" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- range (include "labspace.secretPaths" . | fromYamlArray) }}
{{- $parts := splitList "." . }}
{{- $section := index $s (first $parts) }}
{{- if kindIs "map" $section }}
{{- $_ := unset $section (last $parts) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/* The secret settings that are set: {dotted path: value} (YAML). */}}
{{- define "labspace.secretSettings" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- $out := dict }}
{{- range (include "labspace.secretPaths" . | fromYamlArray) }}
{{- $parts := splitList "." . }}
{{- $value := dig (first $parts) (last $parts) "" $s }}
{{- if $value }}
{{- $_ := set $out . (toString $value) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The environment variable of a setting: hub.db_url -> LABSPACE_HUB_DB_URL. */}}
{{- define "labspace.envName" -}}
{{- printf "LABSPACE_%s" (. | replace "." "_" | upper) }}
{{- end }}

{{/* hub_port, and the enabled managed services with their ports (YAML). */}}
{{- define "labspace.hubPort" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- dig "hub" "hub_port" 8081 $s | int }}
{{- end }}

{{/* The proxy's public port (hub.port) and API port (hub.proxy_api_port). */}}
{{- define "labspace.proxyPort" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- dig "hub" "port" 8000 $s | int }}
{{- end }}

{{- define "labspace.proxyApiPort" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- dig "hub" "proxy_api_port" 8001 $s | int }}
{{- end }}

{{- define "labspace.servicePorts" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- $out := dict }}
{{- range $name, $port := (include "labspace.serviceDefaults" . | fromYaml) }}
{{- if dig $name "enabled" true $s }}
{{- $_ := set $out $name (dig $name "port" $port $s | int) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The hub's /hub/health path under hub.base_url. */}}
{{- define "labspace.healthPath" -}}
{{- printf "%shub/health" (include "labspace.baseUrl" .) }}
{{- end }}

{{/* Workspaces' namespace (the release's unless backend.kubernetes.namespace). */}}
{{- define "labspace.workspaceNamespace" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- dig "backend" "kubernetes" "namespace" .Release.Namespace $s }}
{{- end }}

{{- define "labspace.backendType" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- $s.backend.type }}
{{- end }}

{{/*
A NetworkPolicy peer for pods with `labels` in namespace `ns`, seen from
namespace `from`: (dict "labels" "..yaml.." "ns" "x" "from" "y").
*/}}
{{- define "labspace.peer" -}}
- podSelector:
    matchLabels:
      {{- .labels | nindent 6 }}
  {{- if ne .ns .from }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .ns }}
  {{- end }}
{{- end }}

{{/*
Generated secrets: the value in the chart's Secret if it exists (`lookup`,
as z2jh does, so `helm upgrade` keeps them), else a new one. `helm template`
and `--dry-run` have no cluster: they always generate.
*/}}
{{- define "labspace.randHex" -}}
{{- $result := "" }}
{{- range $i := until . }}
{{- $result = print $result (mod (randNumeric 4 | atoi) 16 | printf "%x") }}
{{- end }}
{{- $result }}
{{- end }}

{{- define "labspace.keptSecret" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $state := lookup "v1" "Secret" $root.Release.Namespace (include "labspace.secret.fullname" $root) | default dict }}
{{- $data := $state.data | default dict }}
{{- if hasKey $data $key }}
{{- index $data $key | b64dec }}
{{- else if eq $key "proxy.token" }}
{{- randAlphaNum 64 }}
{{- else }}
{{- include "labspace.randHex" 64 }}
{{- end }}
{{- end }}

{{- define "labspace.baseUrl" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- dig "hub" "base_url" "/" $s }}
{{- end }}
