#!/usr/bin/env bash
# A throwaway Debian root for the .deb install test: debootstrap --variant=minbase of this host's suite,
# plus systemd (for `systemd-analyze verify --root`), procps (/bin/kill) and iproute2 (Recommends),
# from the Debian mirror apt already uses (so nothing here names a host). Kept between runs: the test
# installs and purges the package, leaving the root as it found it.
#
#   debroot.sh DIR
set -euo pipefail
dir=${1:?usage: debroot.sh DIR}
[[ -x $dir/bin/sh && -f $dir/var/lib/dpkg/status && -f $dir/.featherlb-debroot ]] && exit 0
[[ $(id -u) == 0 ]] || { echo "debroot: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }

. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
# The first "deb" source of the main archive: deb822 (.sources) or one-line (sources.list) format.
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
  /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print uri; exit } }')
[[ -n $mirror ]] || mirror=$(awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
[[ -n $mirror ]] || { echo "debroot: no apt source for $suite found" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
debootstrap --variant=minbase --include=systemd,procps,iproute2 "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
touch "$dir/.featherlb-debroot"
echo "debroot: $suite (minbase) in $dir"
