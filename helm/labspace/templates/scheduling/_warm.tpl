{{/*
The warm pool on the kubernetes backend (labspace.backend.warm_pool), as
zero-to-jupyterhub keeps room for users: placeholder pods per pooled profile
that workspace pods preempt, and an image pre-puller per pooled profile.

"labspace.warmPool" gives YAML (`include ... | fromYaml`):
  enabled: true when backend.type is kubernetes, warm_pool.enabled is true
    (`auto`, the default, is off on kubernetes: placeholders hold cluster
    capacity) and warm_pool.size above 0
  size: warm_pool.size (placeholders per pooled profile)
  profiles: the pooled profiles (warm_pool.profiles; [] = every profile; no
    profiles in the settings = the implicit one, "default"), each
    {slug, image, requests, limits, nodeSelector, tolerations}: requests are the
    profile's guarantees, else its limits (what Kubernetes makes a workspace
    pod's requests), memory as a binary quantity (4G -> 4Gi), GPUs as
    nvidia.com/gpu in requests and limits (spawners/kube.py does the same).
*/}}
{{- define "labspace.warmPool" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- $warm := dig "backend" "warm_pool" dict $s }}
{{- $on0 := and (eq $s.backend.type "kubernetes") (eq (dig "enabled" "auto" $warm | toString) "true") }}
{{- $size := hasKey $warm "size" | ternary $warm.size 2 | int }}
{{- $on := and $on0 (gt $size 0) }}
{{- $only := dig "profiles" list $warm }}
{{- $image := dig "backend" "image" "labspace/workspace:latest" $s }}
{{- $profiles := $s.profiles | default (list (dict "slug" "default")) }}
{{- $out := list }}
{{- if $on }}
{{- range $profiles }}
{{- if or (not $only) (has .slug $only) }}
{{- $requests := dict }}
{{- $limits := dict }}
{{- $cpu := dig "cpu" "guarantee" (dig "cpu" "limit" "" .) . }}
{{- if $cpu }}
{{- $_ := set $requests "cpu" ($cpu | toString) }}
{{- end }}
{{- $mem := dig "memory" "guarantee" (dig "memory" "limit" "" .) . | toString }}
{{- if $mem }}
{{- $_ := set $requests "memory" (regexMatch "[KMGT]$" $mem | ternary (printf "%si" $mem) $mem) }}
{{- end }}
{{- $gpus := dig "gpus" 0 . | int }}
{{- if gt $gpus 0 }}
{{- $_ := set $requests "nvidia.com/gpu" ($gpus | toString) }}
{{- $_ := set $limits "nvidia.com/gpu" ($gpus | toString) }}
{{- end }}
{{- $out = append $out (dict "slug" .slug "image" (.image | default $image) "requests" $requests "limits" $limits "nodeSelector" (dig "node_selector" dict .) "tolerations" (dig "tolerations" list .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "enabled" $on "size" $size "profiles" $out) }}
{{- end }}

{{- define "labspace.priority.workspace" -}}{{ include "labspace.fullname" . }}-workspace{{- end }}
{{- define "labspace.priority.imagePuller" -}}{{ include "labspace.fullname" . }}-image-puller{{- end }}
{{- define "labspace.priority.placeholder" -}}{{ include "labspace.fullname" . }}-placeholder{{- end }}

{{/* A per-profile object name: pass (list $ "placeholder" slug); at most 52
characters (a StatefulSet's pods get a revision label of its name + 11). A long
release name is cut, with a hash of it, so the profile part always stays. */}}
{{- define "labspace.warmName" -}}
{{- $full := include "labspace.fullname" (index . 0) }}
{{- $suffix := printf "%s-%s" (index . 1) (index . 2) }}
{{- $name := printf "%s-%s" $full $suffix }}
{{- if le (len $name) 52 }}
{{- $name }}
{{- else }}
{{- $room := max 1 (sub 52 (add (len $suffix) 7)) | int }}
{{- printf "%s-%s-%s" ($full | trunc $room | trimSuffix "-") (sha256sum $full | trunc 5) $suffix | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Secrets for pulling workspace images: KubeSpawner's image_pull_secrets in labspace.hub.config. */}}
{{- define "labspace.workspacePullSecrets" -}}
{{- $s := include "labspace.settingsWithSecrets" . | fromYaml }}
{{- $given := dig "hub" "config" "KubeSpawner" "image_pull_secrets" list $s }}
{{- $names := kindIs "string" $given | ternary (list $given) $given }}
{{- with $names }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
