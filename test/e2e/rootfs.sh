#!/usr/bin/env bash
# Stage the root file system of a FROM-scratch image: the given executables plus every shared library
# `ldd` says they load (glibc's loader and libs), at the paths the loader looks for them, and an empty
# /tmp. Nothing else: no shell, no package manager.
#
#   rootfs.sh OUT_DIR EXECUTABLE[=PATH_IN_IMAGE] ...
#
# EXECUTABLE may be followed by "=/path/in/image" (default: /usr/local/bin/<basename>). Shared
# libraries given as arguments (*.so*) are copied with their own dependencies, for programs that
# dlopen them.
set -euo pipefail

out=${1:?usage: rootfs.sh OUT_DIR EXECUTABLE[=PATH_IN_IMAGE] ...}
shift
rm -rf "$out"
mkdir -p "$out/tmp" "$out/etc"
chmod 1777 "$out/tmp"
# glibc's resolver reads these; Docker bind-mounts /etc/resolv.conf and /etc/hosts over them.
: > "$out/etc/hosts"
: > "$out/etc/resolv.conf"
printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"

copy() { # copy SRC to DST inside the image, dereferencing symlinks
  mkdir -p "$out$(dirname "$2")"
  cp -L "$1" "$out$2"
}

libs_of() { # the absolute paths ldd resolves, including the ELF interpreter
  ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}'
}

declare -A seen=()
for arg in "$@"; do
  src=${arg%%=*}
  if [[ $arg == *=* ]]; then dst=${arg#*=}; else dst=/usr/local/bin/$(basename "$src"); fi
  [[ -e $src ]] || { echo "rootfs.sh: $src does not exist" >&2; exit 1; }
  copy "$src" "$dst"
  for lib in $(libs_of "$src"); do
    [[ -n ${seen[$lib]:-} ]] && continue
    seen[$lib]=1
    copy "$lib" "$lib"
  done
done
