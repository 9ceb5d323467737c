#!/bin/sh
# Writes a tarball of a minimal root filesystem made from Debian's busybox-static:
# busybox and its applet links, /etc/passwd and /etc/group with root, nobody and an
# unprivileged user `app` (1000:1000, also in group `extra` 1001), and the usual
# top-level directories. Usage: busybox-rootfs.sh OUT.tar
set -eu
out=${1:?usage: busybox-rootfs.sh OUT.tar}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-rootfs.sh: $busybox not found; apt-get install busybox-static" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home/app" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/var/www"
chmod 1777 "$dir/tmp"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$dir/etc/group" <<'G'
root:x:0:
app:x:1000:
extra:x:1001:app
nogroup:x:65534:
G
chown 1000:1000 "$dir/home/app"
echo '<h1>hello from berth</h1>' > "$dir/var/www/index.html"
tar --numeric-owner --sort=name --mtime=@0 -C "$dir" -cf "$out" .
