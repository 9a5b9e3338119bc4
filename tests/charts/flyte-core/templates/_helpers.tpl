{{- /* Shared helpers of the test stand-in; they mirror flyte-core's naming, labels, db mount and storage.yaml. */ -}}

{{- /* Namespace of every object: forceNamespace when set, else the release namespace. */ -}}
{{- define "fc.namespace" -}}
{{- default .Release.Namespace .Values.forceNamespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Selector labels. Call with (list "<component>" $). */ -}}
{{- define "fc.selector" -}}
{{- $root := index . 1 -}}
app.kubernetes.io/name: {{ index . 0 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- /* Object labels: the selector plus chart and manager. Call with (list "<component>" $). */ -}}
{{- define "fc.labels" -}}
{{- $root := index . 1 -}}
{{ include "fc.selector" . }}
helm.sh/chart: {{ include "fc.chart" $root }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end -}}

{{- /* Pod labels: object labels plus the extra ones given. Call with (list "<component>" $ <extra map>). */ -}}
{{- define "fc.podLabels" -}}
{{ include "fc.labels" (list (index . 0) (index . 1)) }}
{{- with index . 2 }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* The database password Secret as a volume, and as a mount at /etc/db; nothing when no Secret is named.
Call with (list $ <indent>) right after a "{{-": the output starts on a new line at that indent. */ -}}
{{- define "fc.dbSecretVolume" -}}
{{- with (index . 0).Values.common.databaseSecret.name -}}
{{- printf "- name: %s\n  secret:\n    secretName: %s" . . | nindent (index $ 1) -}}
{{- end -}}
{{- end -}}

{{- define "fc.dbSecretMount" -}}
{{- with (index . 0).Values.common.databaseSecret.name -}}
{{- printf "- name: %s\n  mountPath: /etc/db" . | nindent (index $ 1) -}}
{{- end -}}
{{- end -}}

{{- /* The storage section shared by flyteadmin, datacatalog and flytepropeller. */ -}}
{{- define "fc.storage" -}}
{{- $s := .Values.storage -}}
storage:
{{- if eq $s.type "s3" }}
  type: s3
  container: {{ $s.bucketName | quote }}
  connection:
    auth-type: {{ $s.s3.authType }}
    region: {{ $s.s3.region }}
    {{- with $s.s3.endpoint }}
    endpoint: {{ . }}
    {{- end }}
    {{- if eq $s.s3.authType "accesskey" }}
    access-key: {{ $s.s3.accessKey }}
    secret-key: {{ $s.s3.secretKey }}
    {{- end }}
{{- else if eq $s.type "gcs" }}
  type: stow
  stow:
    kind: google
    config:
      json: ""
      project_id: {{ ($s.gcs | default dict).projectId }}
      scopes: https://www.googleapis.com/auth/cloud-platform
  container: {{ $s.bucketName | quote }}
{{- else if eq $s.type "sandbox" }}
  {{- $minio := printf "http://minio.%s.svc.cluster.local:9000" .Release.Namespace }}
  type: minio
  container: {{ $s.bucketName | quote }}
  stow:
    kind: s3
    config:
      access_key_id: minio
      auth_type: accesskey
      secret_key: miniostorage
      disable_ssl: true
      endpoint: {{ $minio }}
      region: us-east-1
  signedUrl:
    stowConfigOverride:
      endpoint: {{ $minio }}
{{- else if eq $s.type "custom" }}
  {{- with $s.custom }}
  {{- tpl (toYaml .) $ | nindent 2 }}
  {{- end }}
{{- end }}
  enable-multicontainer: {{ $s.enableMultiContainer }}
  limits:
    maxDownloadMBs: {{ $s.limits.maxDownloadMBs }}
  cache:
    max_size_mbs: {{ $s.cache.maxSizeMBs }}
    target_gc_percent: {{ $s.cache.targetGCPercent }}
{{- end -}}

{{- /* One ConfigMap data entry, "<file>: |" at two spaces, holding the values given with tpl applied;
nothing when the values are empty. Call with (list "<file>" <values> $); place right after a "{{-". */ -}}
{{- define "fc.configFile" -}}
{{- $root := index . 2 -}}
{{- with index . 1 }}
  {{ index $ 0 }}: |
    {{- tpl (toYaml .) $root | nindent 4 }}
{{- end }}
{{- end -}}

{{- /* Like fc.configFile, without tpl. Call with (list "<file>" <values>). */ -}}
{{- define "fc.configFileRaw" -}}
{{- with index . 1 }}
  {{ index $ 0 }}: |
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- /* Chart name (or nameOverride); names the Ingress. */ -}}
{{- define "fc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The securityContext flyte-core gives each Flyte container and init container that has one (not
flytepropeller's nor syncresources'). Call with the indent right after a "{{-". */ -}}
{{- define "fc.containerSecurityContext" -}}
{{- "securityContext:\n  allowPrivilegeEscalation: false\n  capabilities:\n    drop:\n      - ALL" | nindent . -}}
{{- end -}}
