{{/* Name of the chart's objects. */}}
{{- define "hort.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "hort.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "hort.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* "true" when the users' aggregated ClusterRoles are rendered (rbac.aggregatedRoles; auto:
unless operator.watchNamespace is set), else empty. */}}
{{- define "hort.aggregatedRoles" -}}
{{- $set := .Values.rbac.aggregatedRoles -}}
{{- if eq (toString $set) "auto" -}}
{{- if not .Values.operator.watchNamespace }}true{{ end -}}
{{- else if $set }}true{{ end -}}
{{- end -}}
