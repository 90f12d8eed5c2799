{{- /* What the scaler reads and writes where the VariantAutoscalings live: a ClusterRole when it watches every
namespace, a Role in watch.namespace when it watches one (rbac.yaml). */}}
{{- define "kedascaler.watchRules" -}}
- apiGroups: ["llmd.ai"]
  resources: ["variantautoscalings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["llmd.ai"]
  resources: ["variantautoscalings/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  # patch: controller.kubernetes.io/pod-deletion-cost on the pods of variants scaling down (docs/scaling-down.md)
  verbs: ["get", "list", "watch"{{ if .Values.podDeletionCost.enabled }}, "patch"{{ end }}]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.scaledObjects.enabled }}
# CRD-free variants: a ScaledObject describes the variant (read only; KEDA owns it).
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}
