{{/* Names: the release name, with the chart's appended unless it already holds it. */}}
{{- define "rds-csi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rds-csi.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (controller or node). */}}
{{- define "rds-csi.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "rds-csi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "rds-csi.secretName" -}}
{{- .Values.rds.auth.existingSecret | default (printf "%s-rds" (include "rds-csi.fullname" .)) -}}
{{- end -}}

{{/* The node's kubelet paths. */}}
{{- define "rds-csi.pluginDir" -}}
{{ .Values.node.kubeletDir }}/plugins/{{ .Values.driverName }}
{{- end -}}
{{- define "rds-csi.stateDir" -}}
{{ .Values.node.stateDir | default (printf "%s/volumes" (include "rds-csi.pluginDir" .)) }}
{{- end -}}

{{/* Whether the pin of the RDS's identity is a file (known_hosts, CA) kept in a ConfigMap. */}}
{{- define "rds-csi.trustFiles" -}}
{{- if or .Values.rds.knownHosts .Values.rds.caCertificate }}true{{ end -}}
{{- end -}}

{{/* The ServiceMonitor CRD is served. */}}
{{- define "rds-csi.serviceMonitor" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end -}}
{{- end -}}
