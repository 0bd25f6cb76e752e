// The Kubernetes API permissions nodewarden's code uses, by service account. The manifests' RBAC must
// grant these and nothing more (test/manifests.ts checks both ways).

export interface PermissionRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

export const PERMISSIONS: Record<'nodewarden-agent' | 'nodewarden-aggregator', PermissionRule[]> = {
  // agent/exporters/kubernetes.ts: read its Node, patch the Node's status conditions, create Node and Pod
  // events. agent/kube/node.ts: read its Node (Ready), list kubelet's Unhealthy events (probe failures)
  // and the Node's Warning events (kubelet's ImageGCFailed, FreeDiskSpaceFailed, for disk.imageGc).
  // agent/kube/pods.ts: list and watch the pods bound to its node; cli/why.ts --local: get one pod.
  'nodewarden-agent': [
    { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
    { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
    { apiGroups: [''], resources: ['events'], verbs: ['create', 'list'] },
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  ],
  // aggregator/kube-auth.ts (--agent-auth kubernetes): TokenReviews of agents' bound tokens, the pod a
  // token names (before Kubernetes 1.30 tokens carry no node name), nodes to forget deleted ones.
  // aggregator/evicted.ts: list and delete pods, only with the evicted-cleanup component.
  'nodewarden-aggregator': [
    { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'delete'] },
    { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
  ],
};
