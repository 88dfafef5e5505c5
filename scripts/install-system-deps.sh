#!/usr/bin/env bash
# Installs the Debian packages tunnelnet's tests, lab and benchmarks use, when they are missing.
# Without root it only reports what is missing: root-only tests skip with a reason then.
set -euo pipefail

# command -> Debian package that provides it
declare -A wanted=(
  [ip]=iproute2
  [ethtool]=ethtool
  [tcpdump]=tcpdump
  [tshark]=tshark
  [iperf3]=iperf3
  [ovs-vswitchd]=openvswitch-switch
  [ping]=iputils-ping
  [chromium]=chromium  # the browser Playwright drives in the web page test
  [etcd]=etcd-server  # the etcd store's tests start their own etcd (never the system service)
  [openssl]=openssl  # the TLS tests make their CA and certificates with it, as docs/deploy.md does
  [etcdctl]=etcd-client  # lab status asks the lab's etcd members for health and leader with it
  [dnsmasq]=dnsmasq-base  # the DHCP agent's server (dnsmasq-base ships no system service)
  [dhcp_release]=dnsmasq-utils  # frees a deleted port's lease in dnsmasq
  [udhcpc]=udhcpc  # the lab VMs' DHCP client (busybox)
  [clang]=clang  # `make bpf` compiles the kernel fast path's programs ahead of time (-target bpf)
  [bpftool]=bpftool  # a unit test reads the compiled object's BTF with it
)

# files -> Debian package: what is no command (headers, the shared library the loader opens)
declare -A wanted_files=(
  [/usr/include/bpf/bpf_helpers.h]=libbpf-dev  # the BPF programs' helper declarations
  ["/usr/include/$(uname -m)-linux-gnu/asm/types.h"]=linux-libc-dev  # <linux/bpf.h> needs <asm/types.h>
)

missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${wanted[$cmd]}")
done
for file in "${!wanted_files[@]}"; do
  [ -e "$file" ] || missing+=("${wanted_files[$file]}")
done
# the loader opens libbpf.so.1 with ctypes at run time (kernel_loader.py)
ldconfig -p 2>/dev/null | grep -q 'libbpf\.so\.1 ' || missing+=(libbpf1)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing (need root to install): ${missing[*]}" >&2
  echo "root-only tests will be skipped" >&2
  exit 0
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Installing must not start system services (etcd, Open vSwitch): the tests and the lab start
# their own daemons in run directories of their own. policy-rc.d's 101 means "not allowed".
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# tshark asks whether non-root users may capture; answer for it
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages installed"
