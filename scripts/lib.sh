# Shared helpers for scripts/run and scripts/test: install what a fresh Debian machine
# lacks. Sourced, not run.

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# apt_need PKG... : installs the Debian packages that are not installed yet.
apt_need() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
  fi
}

# rust_need: a Rust toolchain (1.95 or newer) with rustfmt and clippy.
rust_need() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "==> installing Rust with rustup"
    apt_need curl ca-certificates
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0 -c rustfmt -c clippy
    . "$HOME/.cargo/env"
  fi
}

# node_need: the npm packages of package.json (browser libraries and the test driver).
node_need() {
  if [ -f package.json ]; then
    command -v npm >/dev/null 2>&1 || apt_need nodejs npm
    # build.rs may have made an empty node_modules/: look at npm's own record instead.
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      echo "==> npm ci"
      npm ci --no-audit --no-fund --loglevel=error
    fi
  fi
}
