# shellcheck shell=bash
# Sourced by the build scripts. `find_libclang` looks for libclang the way bindgen does: bindgen
# (through rb-sys, for the Ruby extension) loads it at run time with clang-sys (`runtime`
# feature), whose search (clang-sys 1.9, build/common.rs and build/dynamic.rs) is mirrored here:
#
#   file names  libclang.so, libclang-*.so, libclang.so.*, libclang-*.so.*, except any name
#               containing "-cpp." (libclang-cpp.so.N is the C++ library, which bindgen cannot
#               use: a machine with only libclang-cpp14 installed has no libclang);
#   directories LIBCLANG_PATH alone when it is set (a file or a directory); otherwise
#               `llvm-config --prefix` (LLVM_CONFIG_PATH) /bin, /lib, /lib64, LD_LIBRARY_PATH,
#               LIBRARY_PATH, then /usr/local/llvm*/lib*, /usr/local/lib*{,/*,/*/*},
#               /usr/lib*{,/*,/*/*};
#   validation  a readable 64-bit ELF file (a dangling symlink does not count).
#
# bindgen also needs clang's builtin headers (stddef.h, ...) to parse Ruby's headers; Debian ships
# them in libclang-common-N-dev, which libclang-dev pulls in. `libclang_headers_found` checks them.
#
# `find_libclang` prints the first library found and returns 0, or returns 1.

_libclang_name_ok() {
  case "$1" in
    *-cpp.*) return 1 ;;
    libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*) return 0 ;;
    *) return 1 ;;
  esac
}

# A readable 64-bit ELF file: "\177ELF" then class 2.
_libclang_elf64() {
  [ -r "$1" ] && [ "$(od -An -c -N5 "$1" 2>/dev/null | tr -d ' \n')" = '177ELF002' ]
}

# Prints the first usable library among the given paths and returns 0, or returns 1.
_libclang_first() {
  local f
  for f in "$@"; do
    if _libclang_name_ok "${f##*/}" && _libclang_elf64 "$f"; then
      echo "$f"
      return 0
    fi
  done
  return 1
}

# No pipelines into `head` and no failing commands outside conditions: callers use
# `set -euo pipefail`.
find_libclang() {
  local dir prefix
  local -a dirs=() paths=() candidates=()
  if [ -n "${LIBCLANG_PATH+set}" ]; then
    if [ -f "$LIBCLANG_PATH" ]; then
      _libclang_first "$LIBCLANG_PATH"
      return
    fi
    dirs=("$LIBCLANG_PATH")
  else
    if prefix=$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null) && [ -n "$prefix" ]; then
      dirs+=("$prefix/bin" "$prefix/lib" "$prefix/lib64")
    fi
    IFS=: read -r -a paths <<<"${LD_LIBRARY_PATH:-}:${LIBRARY_PATH:-}" || true
    dirs+=("${paths[@]}")
  fi
  for dir in "${dirs[@]}"; do
    if [ -n "$dir" ] && [ -d "$dir" ]; then
      candidates+=("$dir"/libclang*.so*)
    fi
  done
  _libclang_first "${candidates[@]}" && return 0
  [ -z "${LIBCLANG_PATH+set}" ] || return 1
  # The glob directories: a file at depth 1..3 below /usr/lib* and /usr/local/lib*, or 2 below
  # /usr/local/llvm* (for /usr/local/llvm*/lib*/). -L: a glob follows symlinked directories.
  mapfile -t candidates < <(
    find -L /usr/lib* /usr/local/lib* -maxdepth 3 -name 'libclang*.so*' 2>/dev/null
    find -L /usr/local/llvm* -mindepth 2 -maxdepth 2 -path '/usr/local/llvm*/lib*/libclang*.so*' 2>/dev/null
  )
  _libclang_first "${candidates[@]}"
}

# clang's builtin headers: <resource dir>/include/stddef.h, the resource dir being
# lib/clang/<version> next to an LLVM installation's libraries.
libclang_headers_found() {
  local libdir f
  libdir=$("${LLVM_CONFIG_PATH:-llvm-config}" --libdir 2>/dev/null) || libdir=/nonexistent
  for f in "$libdir"/clang/*/include/stddef.h /usr/lib/llvm-*/lib/clang/*/include/stddef.h \
    /usr/lib/clang/*/include/stddef.h /usr/local/lib/clang/*/include/stddef.h \
    /usr/local/llvm*/lib*/clang/*/include/stddef.h; do
    [ -f "$f" ] && return 0
  done
  return 1
}
