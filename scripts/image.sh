#!/usr/bin/env bash
# Builds the container image without a container daemon and proves it complete.
#
#   scripts/image.sh            (as root)
#
# Two layers: the base root filesystem, unpacked from the Debian packages in
# deploy/image/packages by deploy/image/rootfs.sh (cached under the target directory, keyed
# by the package list, the script and the package versions), and the release binary. umoci
# writes them as an OCI image layout; the image is then unpacked again and run in a chroot:
# every program in it must load, `rds-csi --version` must answer and `rds-csi doctor --json`
# must find every tool it checks. Writes, under $CARGO_TARGET_DIR (default target/):
#   image/oci/                   the OCI layout (tag: the binary's version)
#   image/rds-csi-<version>.oci.tar  the same as one archive (skopeo copy oci-archive:...)
# and prints the compressed size. RDS_CSI_BINARY=path uses that binary instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

[[ $(id -u) -eq 0 ]] || { echo "image.sh: run as root (chroot, mounts, file ownership)" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/image
mkdir -p "$work"

need=()
command -v umoci >/dev/null || need+=(umoci)
command -v python3 >/dev/null || need+=(python3)
command -v strip >/dev/null || need+=(binutils)
if ((${#need[@]})); then
  step "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

binary=${RDS_CSI_BINARY:-}
if [[ -z $binary ]]; then
  step "cargo build --release --bin rds-csi"
  cargo build --release --locked --bin rds-csi
  binary=$target/release/rds-csi
fi
version=$("$binary" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)

# --- base layer ---------------------------------------------------------------------------
packages=$repo/deploy/image/packages
mapfile -t names < <(grep -v '^[[:space:]]*\(#\|$\)' "$packages" | awk '{print $1}')
# Fresh package lists at most a day old, so that a rebuild picks up security updates.
lists=(/var/lib/apt/lists/*_Packages*)
if [[ ! -e ${lists[0]} ]] || [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin +1440 -print -quit) ]]; then
  step "apt-get update"
  apt-get update -qq
fi
versions=$(apt-cache show --no-all-versions "${names[@]}" | grep -E '^(Package|Version|Architecture):')
key=$( { cat "$packages" deploy/image/rootfs.sh; echo "$versions"; } | sha256sum | cut -c1-16)
base=$work/base-$key
if [[ ! -f $base/layer.tar ]]; then
  step "base root filesystem from ${#names[@]} Debian packages (new key $key)"
  rm -rf "$work"/base-*
  mkdir -p "$base/debs"
  # As root apt would hand the download to the _apt user, which cannot write here.
  (cd "$base/debs" && apt-get download -q -o APT::Sandbox::User=root "${names[@]}" >/dev/null)
  deploy/image/rootfs.sh build "$packages" "$base/debs" "$base/rootfs"
  deploy/image/rootfs.sh check "$base/rootfs"
  # Same input, same layer: sorted, numeric owners, times clamped to the newest file of the
  # packages (the files made here would otherwise carry the time of the build).
  epoch=$(find "$base/rootfs/usr" -type f -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1)
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$epoch" --clamp-mtime \
    -C "$base/rootfs" -cf "$base/layer.tar.tmp" .
  mv "$base/layer.tar.tmp" "$base/layer.tar"
  rm -rf "$base/debs"
else
  step "base root filesystem: cached ($base)"
fi

# --- binary layer and the OCI layout -------------------------------------------------------
step "OCI layout for rds-csi $version ($arch)"
bin=$work/bin
rm -rf "$bin" && mkdir -p "$bin/rootfs/usr/bin"
install -m 0755 "$binary" "$bin/rootfs/usr/bin/rds-csi"
# The symbol table stays (panic backtraces name functions); debug information goes.
strip --strip-debug "$bin/rootfs/usr/bin/rds-csi"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@"$(stat -c %Y "$binary")" \
  -C "$bin/rootfs" -cf "$bin/layer.tar" .

oci=$work/oci
image=$oci:$version
rm -rf "$oci"
umoci init --layout "$oci"
umoci new --image "$image"
umoci raw add-layer --image "$image" --history.created_by "deploy/image/rootfs.sh build (key $key)" "$base/layer.tar"
umoci raw add-layer --image "$image" --history.created_by "rds-csi $version" "$bin/layer.tar"
umoci config --image "$image" --architecture "$arch" --os linux \
  --config.entrypoint /usr/bin/rds-csi \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=rds-csi \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.source=https://github.com/rds-csi/rds-csi \
  --config.label org.opencontainers.image.licenses=Apache-2.0
umoci gc --layout "$oci"
archive=$work/rds-csi-$version.oci.tar
tar --sort=name -C "$oci" -cf "$archive" .

# --- prove it: unpack and run it ------------------------------------------------------------
step "unpacking the image and running it in a chroot"
bundle=$work/bundle
rm -rf "$bundle"
umoci unpack --image "$image" "$bundle" >/dev/null
root=$bundle/rootfs
deploy/image/rootfs.sh check "$root"
# In a mount namespace of its own, so that nothing is left mounted whatever happens; /sys and
# /dev as the node's pod sees them (read-only here: doctor only reads).
in_image() {
  unshare --mount --propagation private -- sh -c '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" "$@"' sh "$root" "$@"
}
in_image /usr/bin/rds-csi --version
status=0
in_image /usr/bin/rds-csi doctor --json >"$work/doctor.json" || status=$?
# Doctor exits 1 when a check fails (this machine is no Kubernetes node); 2 would be a usage error.
((status <= 1)) || { echo "image.sh: doctor exited $status" >&2; exit 1; }
python3 - "$work/doctor.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
tools = [c for c in report["checks"] if c["id"].startswith("node.tool.")]
expected = {"blkid", "mkfs.ext4", "resize2fs", "e2fsck", "tune2fs", "mkfs.xfs", "xfs_growfs", "xfs_admin"}
found = {c["id"].removeprefix("node.tool.") for c in tools}
missing = expected - found
bad = [c for c in tools if c["status"] != "ok"]
for c in tools:
    print(f"  {c['id']:<22} {c['status']:<5} {c['detail']}")
if missing or bad:
    sys.exit(f"image.sh: doctor did not find every tool in the image: missing checks {sorted(missing)}, "
             f"failed {[c['id'] for c in bad]}")
others = {c["id"]: c["status"] for c in report["checks"] if not c["id"].startswith("node.tool.")}
print(f"  every tool found; other checks (this host is no node): {others}")
EOF
in_image /usr/sbin/modprobe --version >/dev/null
rm -rf "$bundle" "$bin"

# --- size ----------------------------------------------------------------------------------
python3 - "$oci" "$version" <<'EOF'
import json, os, sys
oci, tag = sys.argv[1], sys.argv[2]
def blob(digest):
    return os.path.join(oci, "blobs", *digest.split(":"))
index = json.load(open(os.path.join(oci, "index.json")))
desc = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifest = json.load(open(blob(desc["digest"])))
layers = sum(l["size"] for l in manifest["layers"])
print(f"\nimage {desc['digest']}")
for l in manifest["layers"]:
    print(f"  layer {l['digest'][:19]}  {l['size'] / 2**20:6.1f} MiB compressed")
print(f"compressed size: {layers / 2**20:.1f} MiB (limit 40 MiB)")
if layers > 40 * 2**20:
    sys.exit("image.sh: the image exceeds 40 MiB compressed")
EOF
echo "OCI layout: $oci (tag $version); archive: $archive"
echo "image.sh: done in $((SECONDS - started)) s"
