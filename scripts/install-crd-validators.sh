#!/usr/bin/env bash
# Offline schema validators for the custom resources the program renders (PrometheusRule, PodMonitor, ServiceMonitor,
# ScaledObject, TriggerAuthentication, NodePool, EC2NodeClass): npm's @kubernetes-models packages carry each CRD's published OpenAPI schema
# as a compiled JSON-schema validator (docs/NOTES: "Custom resources"). Installed into .crd-validators/ (gitignored),
# pinned, and idempotent: does nothing when the pinned versions are already there.
# tests/test_custom_resources.py runs tests/crd_validate.mjs with this folder's node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.crd-validators
# Pinned: a new major may follow a new CRD version; bump deliberately with the chart versions in
# components/monitoring.py (kube-prometheus-stack 78.x ships prometheus-operator v0.86 CRDs; KEDA 2.17) and
# components/karpenter.py (Karpenter v1 APIs: karpenter.sh/v1 NodePool, karpenter.k8s.aws/v1 EC2NodeClass).
PACKAGES=(
  "@kubernetes-models/prometheus-operator@6.0.0"
  "@kubernetes-models/keda@2.0.0"
  "@kubernetes-models/karpenter@2.0.0"
)

installed() {
  local spec name version
  for spec in "${PACKAGES[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    [ -f "$DEST/node_modules/$name/package.json" ] || return 1
    grep -q "\"version\": \"$version\"" "$DEST/node_modules/$name/package.json" || return 1
  done
}

if ! command -v node >/dev/null 2>&1; then
  echo "node is not installed (apt-get install nodejs npm); the custom-resource schema tests need it" >&2
  exit 1
fi
if installed; then
  echo "CRD validators already installed in $DEST"
  exit 0
fi
mkdir -p "$DEST"
[ -f "$DEST/package.json" ] || echo '{"name": "llm-serving-crd-validators", "private": true, "type": "module"}' > "$DEST/package.json"
npm install --prefix "$DEST" --no-audit --no-fund --save-exact "${PACKAGES[@]}"
installed
echo "CRD validators installed in $DEST"
