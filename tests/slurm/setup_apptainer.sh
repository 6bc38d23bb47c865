#!/usr/bin/env bash
# Test infrastructure (the CI and the Slurm test run it), not a way to install Apptainer on a cluster: use the
# site's Apptainer there.
# setup_apptainer.sh - install a working Apptainer on Debian 12 (bookworm), as root, using only
# Debian's package archive.  Idempotent.
#
# Debian 12 has no apptainer/singularity-container package; Debian sid has apptainer, but it is
# linked against glibc 2.38 (only for __isoc23_strtol/__isoc23_strtoul) and bookworm has 2.36.
# This script downloads the sid .deb with a private apt configuration (the system's sources are
# left untouched), rewrites those two symbol references to a tiny shim library, relaxes the libc6
# dependency and installs the result with apt, which pulls the other dependencies from bookworm.
#
# It then adapts the configuration to this sandbox:
#  * the capability bounding set lacks CAP_SYS_RESOURCE, so "root default capabilities = full"
#    fails ("Requesting capability set ... while permitted capability set is ..."):
#    switch to "file" and grant root every capability the bounding set has;
#  * /etc/subuid,/etc/subgid entries for root, so `apptainer build --fakeroot` works
#    (needed for %post: a plain root build requests the full capability set);
#  * /dev/fuse mode 0666 so unprivileged users can mount SIF images with squashfuse.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
T0=$(date +%s)
log() { printf '[setup_apptainer %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
WORK=${APPTAINER_WORKDIR:-/var/cache/apptainer-bookworm}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}
[ -n "$MIRROR" ] || { echo "no Debian mirror found: set DEBIAN_MIRROR" >&2; exit 1; }
LIBDIR=/usr/lib/x86_64-linux-gnu/apptainer/lib

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

DEPS=(ca-certificates containernetworking-plugins squashfs-tools uidmap libseccomp2 libsqlite3-0
      e2fsprogs squashfuse fuse2fs debootstrap patchelf binutils gcc libc6-dev libcap2-bin python3)
MISSING=(); for p in "${DEPS[@]}"; do installed "$p" || MISSING+=("$p"); done
if [ ${#MISSING[@]} -gt 0 ]; then
  log "apt-get install ${MISSING[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

if ! apptainer --version >/dev/null 2>&1; then
  mkdir -p "$WORK/lists/partial" "$WORK/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" > "$WORK/sources.list"
  APTO=(-o Dir::Etc::SourceList="$WORK/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$WORK/lists" -o Dir::Cache::archives="$WORK/archives"
        -o APT::Sandbox::User=root)
  log "fetching apptainer from Debian sid (private apt config in $WORK)"
  apt-get "${APTO[@]}" update -qq
  (cd "$WORK" && rm -f apptainer_*.deb && apt-get "${APTO[@]}" download apptainer >/dev/null)
  DEB=$(ls "$WORK"/apptainer_*_amd64.deb | head -1)
  log "patching $(basename "$DEB") for glibc $(ldd --version | head -1 | awk '{print $NF}')"
  B="$WORK/build"; rm -rf "$B"; mkdir -p "$B"; dpkg-deb -R "$DEB" "$B/pkg"
  cat > "$B/isoc23shim.c" <<'EOF'
/* C23 variants of strtol & co. added in glibc 2.38 (they also accept "0b" prefixes);
   forward to the classic functions of glibc 2.36. */
#include <stdlib.h>
long __isoc23_strtol(const char *s, char **e, int b) { return strtol(s, e, b); }
unsigned long __isoc23_strtoul(const char *s, char **e, int b) { return strtoul(s, e, b); }
long long __isoc23_strtoll(const char *s, char **e, int b) { return strtoll(s, e, b); }
unsigned long long __isoc23_strtoull(const char *s, char **e, int b) { return strtoull(s, e, b); }
EOF
  gcc -shared -fPIC -O2 -o "$B/pkg$LIBDIR/libisoc23shim.so" "$B/isoc23shim.c"
  cat > "$B/retarget_verneed.py" <<'EOF'
import struct, sys
path, old = sys.argv[1], sys.argv[2].encode()
d = bytearray(open(path, "rb").read())
shoff, = struct.unpack_from("<Q", d, 0x28); shentsize, shnum, _ = struct.unpack_from("<HHH", d, 0x3A)
secs = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
for s in secs:
    if s[1] != 0x6ffffffe: continue                      # SHT_GNU_verneed
    stroff = secs[s[6]][4]
    name = lambda o: bytes(d[stroff + o: d.index(b"\0", stroff + o)])
    vn = s[4]
    for _ in range(s[7]):
        _v, cnt, _f, aux, nxt = struct.unpack_from("<HHIII", d, vn)
        auxes, va = [], vn + aux
        for _ in range(cnt):
            h, fl, oth, nm, n2 = struct.unpack_from("<IHHII", d, va); auxes.append((va, h, fl, nm)); va += n2
        donor = next(a for a in auxes if name(a[3]) != old)
        for va, h, fl, nm in auxes:
            if name(nm) == old:   # point the unused requirement at a version libc has anyway
                struct.pack_into("<IH", d, va, donor[1], fl & ~2); struct.pack_into("<I", d, va + 8, donor[3])
        vn += nxt
open(path, "wb").write(d)
EOF
  for f in "$B/pkg/usr/bin/apptainer" "$B/pkg/usr/lib/x86_64-linux-gnu/apptainer/bin/starter"*; do
    [ -f "$f" ] || continue
    for ver in $(objdump -T "$f" | grep -oE 'GLIBC_2\.(3[7-9]|[4-9][0-9])' | sort -u); do
      for sym in $(objdump -T "$f" | awk -v v="($ver)" '$0 ~ v {print $NF}'); do
        case "$sym" in __isoc23_strto*) ;; *) echo "unexpected $ver symbol $sym in $f" >&2; exit 1 ;; esac
        patchelf --clear-symbol-version "$sym" "$f"
      done
      python3 "$B/retarget_verneed.py" "$f" "$ver"
    done
    patchelf --add-needed libisoc23shim.so "$f"       # separate calls: patchelf 0.14 mixes
    patchelf --set-rpath "$LIBDIR" "$f"               # them up when given together
  done
  V=$(sed -n 's/^Version: //p' "$B/pkg/DEBIAN/control")
  sed -i -e "s/^Version: .*/Version: ${V}+bookworm1/" -e 's/libc6 (>= 2\.[0-9]*)/libc6 (>= 2.36)/' "$B/pkg/DEBIAN/control"
  (cd "$B/pkg" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | sort | xargs md5sum > DEBIAN/md5sums)
  dpkg-deb -Znone -b "$B/pkg" "$WORK/apptainer_${V}+bookworm1_amd64.deb" >/dev/null
  log "installing patched package"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$WORK/apptainer_${V}+bookworm1_amd64.deb" >/dev/null
fi
log "$(apptainer --version)"

# --- capabilities: keep only what this sandbox's bounding set allows
CONF=/etc/apptainer/apptainer.conf
BND=$(awk '/^CapBnd/{print $2}' /proc/self/status)
FULL=$(printf "%016x" $(( (1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1 )))
if [ "$((16#$BND))" != "$((16#$FULL))" ]; then
  sed -i 's/^root default capabilities = .*/root default capabilities = file/' "$CONF"
  CAPS=$(capsh --decode="$BND" | sed 's/^.*=//' | tr ',' '\n' | tr a-z A-Z \
         | grep -xF -f <(apptainer capability avail 2>&1 | grep -oE '^CAP_[A-Z_]+') | paste -sd, -)
  apptainer capability add --user root "$CAPS" 2>/dev/null
  log "capability bounding set $BND is not full: root default capabilities = file"
fi
# --- fakeroot (apptainer build --fakeroot) for root
grep -q '^root:' /etc/subuid || echo 'root:100000:65536' >> /etc/subuid
grep -q '^root:' /etc/subgid || echo 'root:100000:65536' >> /etc/subgid
# --- unprivileged SIF mounts via squashfuse
[ -c /dev/fuse ] && chmod 0666 /dev/fuse
log "apptainer ready"
