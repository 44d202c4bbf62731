#!/usr/bin/env bash
# An arm64 Debian Python to run the inference bundle under qemu-user (tests/e2e/test_bundle.py).
# Usage: tests/support/arm64_sysroot.sh [DIR]   (default .cache/arm64-sysroot; needs root for apt)
#
# qemu-user-static comes from apt; the arm64 packages are downloaded with a private apt state
# (no `dpkg --add-architecture`, nothing installed on this machine) and unpacked into DIR, which
# qemu's -L prefix then serves as the arm64 root. ONNX Runtime's CPU detection reads
# /proc/cpuinfo, which qemu-user passes through from the x86 host and which ONNX Runtime
# cannot parse as arm64 (it segfaults at import); qemu looks for files under the -L prefix
# first, so DIR/proc/cpuinfo describes the two Neoverse-N1 cores of a Graviton2 instead.
set -euo pipefail
root="$(realpath -m "${1:-.cache/arm64-sysroot}")"
state="$root.apt"
command -v qemu-aarch64-static >/dev/null || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static
}
mkdir -p "$state/lists/partial" "$state/archives/partial" "$root/proc"
touch "$state/status"
cat > "$state/apt.conf" <<CONF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$state";
Dir::State::Lists "$state/lists";
Dir::State::status "$state/status";
Dir::Cache "$state";
Dir::Cache::archives "$state/archives";
CONF
export APT_CONFIG="$state/apt.conf"
apt-get update -q
apt-get install -y -q --download-only --no-install-recommends \
  python3-minimal libpython3-stdlib libstdc++6
for deb in "$state"/archives/*.deb; do dpkg -x "$deb" "$root"; done
for cpu in 0 1; do
  printf 'processor\t: %s\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$cpu"
done > "$root/proc/cpuinfo"
python="$(ls "$root"/usr/bin/python3.[0-9]* | head -n1)"
qemu-aarch64-static -L "$root" "$python" -I -S -c 'import platform, sys; print(sys.version.split()[0], platform.machine())'
