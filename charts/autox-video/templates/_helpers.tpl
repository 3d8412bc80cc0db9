{{/* Names and labels shared by the templates. */}}
{{- define "autox-video.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "autox-video.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "autox-video.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "autox-video.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "autox-video.labels" -}}
{{ include "autox-video.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
Whether to install the chart's ClusterTrainingRuntime: "true" or "". trainer.runtime.install: auto asks the
API server (its served APIs, .Capabilities) so the chart also installs where Kubeflow Trainer v2 is absent.
*/}}
{{- define "autox-video.installRuntime" -}}
{{- $install := .Values.trainer.runtime.install -}}
{{- if eq (toString $install) "auto" -}}
{{- $install = .Capabilities.APIVersions.Has "trainer.kubeflow.org/v1alpha1/ClusterTrainingRuntime" -}}
{{- end -}}
{{- if $install }}true{{ end -}}
{{- end }}
