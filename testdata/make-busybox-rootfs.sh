#!/usr/bin/env bash
# Makes a busybox base root file system tar from Debian's busybox-static, for tests and demos:
#   testdata/make-busybox-rootfs.sh OUT.tar
# The tar is reproducible (sorted, numeric root ownership, fixed mtimes): the same busybox
# binary always gives the same bytes, so images imported from it have stable digests.
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1; then
  echo "make-busybox-rootfs: $busybox missing: apt-get install busybox-static (scripts/setup-debian.sh does)" >&2
  exit 1
fi
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var/tmp,proc,sys,dev}
cp "$busybox" "$root/bin/busybox"
# Each applet at its usual place, as a relative symlink to the one binary.
"$busybox" --list-full | while read -r path; do
  case $(dirname "$path") in
    .) continue ;;
    bin) target=busybox ;;
    sbin) target=../bin/busybox ;;
    *) target=../../bin/busybox ;;
  esac
  [ "$path" = bin/busybox ] || ln -sf "$target" "$root/$path"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 755 "$root"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
tar --sort=name --mtime=@946684800 --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
