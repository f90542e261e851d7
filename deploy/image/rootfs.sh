#!/bin/sh
# Assembles the image's root filesystem from Debian packages, or checks one.
#
#   rootfs.sh build PACKAGES DEBDIR ROOT   unpack the .debs named in PACKAGES (found in DEBDIR,
#                                          as `apt-get download` names them) into ROOT
#   rootfs.sh check ROOT                   every program and library in ROOT finds what it needs
#
# The packages are unpacked, not installed: no maintainer scripts run, so the result is the
# same on any host (scripts/image.sh) and in a container build (Containerfile). Needs
# dpkg-deb, ldconfig and chroot (root). POSIX sh, so that it runs in debian:bookworm-slim.
set -eu

die() { echo "rootfs.sh: $*" >&2; exit 1; }

# Files nobody reads in a container: manuals, translations, docs (copyright notices stay).
prune() {
  root=$1
  rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
    "$root/usr/share/lintian" "$root/usr/share/bug" "$root/usr/share/bash-completion" \
    "$root/usr/share/zsh" "$root/usr/share/menu"
  # glibc's character set converters: nothing in the image calls iconv (6 MiB).
  rm -rf "$root"/usr/lib/*/gconv
  if [ -d "$root/usr/share/doc" ]; then
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -exec rm -f {} +
    find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -exec rmdir {} +
  fi
}

# Bookworm's packages still ship /bin, /sbin, /lib, /lib64; the image is /usr-merged as
# Debian installs it, so each package's top-level directories move below usr/.
merge_usr() {
  tree=$1
  for d in bin sbin lib lib32 lib64 libx32; do
    if [ -d "$tree/$d" ] && [ ! -L "$tree/$d" ]; then
      mkdir -p "$tree/usr/$d"
      cp -a "$tree/$d/." "$tree/usr/$d/"
      rm -rf "${tree:?}/$d"
    fi
  done
}

build() {
  packages=$1 debdir=$2 root=$3
  [ -f "$packages" ] || die "no package list $packages"
  [ ! -e "$root" ] || die "$root exists; give a new directory"
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$root/var/lib/dpkg/status.d"
  root=$(cd "$root" && pwd)

  grep -v '^[[:space:]]*\(#\|$\)' "$packages" | while read -r pkg paths; do
    set -- "$debdir/${pkg}"_*.deb
    [ $# -eq 1 ] && [ -f "$1" ] || die "want exactly one $pkg .deb in $debdir, found: $*"
    deb=$1
    [ "$(dpkg-deb -f "$deb" Package)" = "$pkg" ] || die "$deb is not $pkg"
    tree=$stage/$pkg
    dpkg-deb -x "$deb" "$tree"
    merge_usr "$tree"
    if [ -z "$paths" ]; then
      cp -a "$tree/." "$root/"
    else
      for path in $paths; do
        [ -e "$tree/$path" ] || [ -L "$tree/$path" ] || die "$pkg has no $path"
        (cd "$tree" && cp -a --parents "$path" "$root/")
      done
      if [ -f "$tree/usr/share/doc/$pkg/copyright" ]; then
        (cd "$tree" && cp -a --parents "usr/share/doc/$pkg/copyright" "$root/")
      fi
    fi
    # A status entry per package, where image scanners (trivy, grype) look in images
    # without a dpkg database, so that security advisories find these versions.
    {
      dpkg-deb -f "$deb" Package Version Architecture Source Maintainer
      echo "Status: install ok installed"
    } >"$root/var/lib/dpkg/status.d/$pkg"
  done

  prune "$root"
  for d in bin sbin lib lib32 lib64 libx32; do
    if [ -d "$root/usr/$d" ]; then ln -s "usr/$d" "$root/$d"; fi
  done

  # The least a container root needs: an unprivileged user for the controller (65532, the
  # usual "nonroot"), a world-writable /tmp, mount points the runtime fills.
  mkdir -p "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/var/run"
  mkdir -p -m 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  mkdir -p -m 0700 "$root/root"
  ldconfig -r "$root"
  rm -rf "$root/var/cache/ldconfig"
}

# Every ELF file resolves all its libraries inside ROOT (asked of ROOT's own loader), and
# every script's interpreter exists there.
check() {
  root=$1
  loader=
  for f in "$root"/usr/lib/*/ld-linux*.so.* "$root"/usr/lib/ld-linux*.so.*; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then loader=${f#"$root"}; break; fi
  done
  [ -n "$loader" ] || die "no dynamic loader in $root"
  bad=0 count=0
  for f in $(find "$root/usr" -type f \( -perm -u+x -o -name '*.so*' \)); do
    rel=${f#"$root"}
    magic=$(head -c 4 "$f" | od -An -c | tr -d ' ')
    case $magic in
      177ELF)
        count=$((count + 1))
        if ! out=$(chroot "$root" "$loader" --list "$rel" 2>&1) || echo "$out" | grep -q 'not found'; then
          echo "rootfs.sh: $rel cannot be loaded:" >&2
          echo "$out" | grep 'not found' >&2 || echo "$out" >&2
          bad=1
        fi
        ;;
      '#!'*)
        count=$((count + 1))
        interp=$(head -n 1 "$f" | sed 's/^#![[:space:]]*//; s/[[:space:]].*//')
        if [ ! -x "$root$interp" ] && [ ! -L "$root$interp" ]; then
          echo "rootfs.sh: $rel needs $interp, which is not in the image" >&2
          bad=1
        fi
        ;;
    esac
  done
  [ "$bad" -eq 0 ] || die "the image is incomplete"
  echo "rootfs.sh: $count programs and libraries checked in $root"
}

case ${1:-} in
  build) [ $# -eq 4 ] || die "usage: rootfs.sh build PACKAGES DEBDIR ROOT"; build "$2" "$3" "$4" ;;
  check) [ $# -eq 2 ] || die "usage: rootfs.sh check ROOT"; check "$2" ;;
  *) die "usage: rootfs.sh build PACKAGES DEBDIR ROOT | check ROOT" ;;
esac
