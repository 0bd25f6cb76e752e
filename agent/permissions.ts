// The Kubernetes API permissions nodewarden's code uses, by service account. The manifests' RBAC must
// grant exactly these (test/manifests.ts checks). Today no component calls the API: node conditions,
// events and evicted-pod cleanup will add their rules here with the code that needs them.

export interface PermissionRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

export const PERMISSIONS: Record<'nodewarden-agent' | 'nodewarden-aggregator', PermissionRule[]> = {
  'nodewarden-agent': [],
  'nodewarden-aggregator': [],
};
