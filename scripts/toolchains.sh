#!/usr/bin/env bash
# Installs what `sluice plugin build` needs to build operators in languages
# other than Rust, from the package registries:
#
#   bash scripts/toolchains.sh c        # clang, lld and wasi-libc (Debian packages)
#   bash scripts/toolchains.sh python   # componentize-py (PyPI), in a virtual environment
#   bash scripts/toolchains.sh js       # componentize-js (npm)
#   bash scripts/toolchains.sh go       # checks Go >= 1.24 (GOOS=wasip1, //go:wasmexport)
#   bash scripts/toolchains.sh all      # all of the above
#
# Python and JavaScript tools go to $SLUICE_TOOLCHAINS (default
# ~/.cache/sluice/toolchains), where `sluice plugin build` looks for them
# after $PATH. Running it again installs only what is missing.
set -euo pipefail

TOOLS="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.23.0

say() { echo "toolchains: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1
  fi
}

install_c() {
  if command -v clang >/dev/null && command -v wasm-ld >/dev/null \
    && [ -e /usr/include/wasm32-wasi/stdio.h ] \
    && ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
    say "c: clang, lld and wasi-libc are installed"
    return
  fi
  say "c: installing clang, lld and wasi-libc (Debian packages)"
  as_root apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null; }
}

install_python() {
  local venv="$TOOLS/python"
  if [ -x "$venv/bin/componentize-py" ] \
    && "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY"; then
    say "python: componentize-py $COMPONENTIZE_PY is installed in $venv"
    return
  fi
  say "python: installing componentize-py $COMPONENTIZE_PY into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY"
}

install_js() {
  local dir="$TOOLS/js"
  if [ -x "$dir/node_modules/.bin/componentize-js" ] \
    && grep -q "\"version\": \"$COMPONENTIZE_JS\"" "$dir/node_modules/@bytecodealliance/componentize-js/package.json" 2>/dev/null; then
    say "js: componentize-js $COMPONENTIZE_JS is installed in $dir"
    return
  fi
  command -v npm >/dev/null || { say "js: npm is missing: install Node.js 20 or newer (apt-get install nodejs npm)"; return 1; }
  say "js: installing componentize-js $COMPONENTIZE_JS into $dir"
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$COMPONENTIZE_JS"
}

install_go() {
  local v
  if ! command -v go >/dev/null; then
    say "go: go is missing: install Go 1.24 or newer (https://go.dev/doc/install) and put it on PATH"
    return 1
  fi
  v=$(go env GOVERSION)
  if [ "$(printf '%s\n' go1.24 "$v" | sort -V | head -1)" != go1.24 ]; then
    say "go: $v is too old (GOOS=wasip1 with //go:wasmexport needs go1.24 or newer)"
    return 1
  fi
  say "go: $v is installed"
}

[ $# -gt 0 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for lang in "$@"; do
  case "$lang" in
    c) install_c ;;
    python) install_python ;;
    js) install_js ;;
    go) install_go ;;
    all) install_c; install_python; install_js; install_go ;;
    *) say "unknown language '$lang' (known: c, python, js, go, all)"; exit 2 ;;
  esac
done
