{{/* The chart's name, and the release-qualified name every object starts with. */}}
{{- define "tandem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tandem.fullname" -}}
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

{{/* Labels on every object; (dict "ctx" . "component" NAME) */}}
{{- define "tandem.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "tandem.selectorLabels" . }}
{{- end }}

{{- define "tandem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The router's control listener as the workers dial it (--router): the
     control Service, which publishes the router before it is ready. */}}
{{- define "tandem.controlURL" -}}
tcp://{{ include "tandem.fullname" . }}-control.{{ .Release.Namespace }}.svc:{{ .Values.router.controlPort }}
{{- end }}

{{- define "tandem.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "tandem.apiKeySecret" -}}
{{- if .Values.apiKeys.existingSecret }}
{{- .Values.apiKeys.existingSecret }}
{{- else if .Values.apiKeys.keys }}
{{- include "tandem.fullname" . }}-api-keys
{{- end }}
{{- end }}

{{/* resources with an optional nvidia.com/gpu limit; (dict "r" RESOURCES "gpus" N) */}}
{{- define "tandem.resources" -}}
{{- with .r.requests }}
requests:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or .r.limits .gpus }}
limits:
  {{- with .r.limits }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if .gpus }}
  nvidia.com/gpu: {{ .gpus }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings the three roles share. */}}
{{- define "tandem.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The model volume (none: the model inside the image). */}}
{{- define "tandem.modelVolume" -}}
{{- if eq .Values.model.volume.type "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ required "model.volume.claimName is required with model.volume.type=pvc" .Values.model.volume.claimName }}
    readOnly: true
{{- else if eq .Values.model.volume.type "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.volume.hostPath is required with model.volume.type=hostPath" .Values.model.volume.hostPath }}
    type: Directory
{{- end }}
{{- end }}

{{- define "tandem.modelMount" -}}
{{- if ne .Values.model.volume.type "none" }}
- name: model
  mountPath: {{ .Values.model.volume.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
