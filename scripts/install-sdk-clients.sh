#!/usr/bin/env bash
# Installs the official analytics SDK clients that tests/tests/integration/sdk_clients.rs
# drives against the local stack:
#   - the `posthog` and `mixpanel` Python packages pinned in tests/sdk/requirements.txt,
#   - `posthog-node`, and the browser SDKs `posthog-js` and `mixpanel-browser`, from
#     tests/sdk/package.json + package-lock.json (npm ci), into tests/sdk/node_modules,
# and python3 / pip / node / npm themselves (Debian packages) when they are missing;
# plus Debian's Chromium, which playwright-core (also in package.json) drives for the status
# page's and the browser SDKs' tests (tests/tests/integration/browser.rs, browser_sdks.rs).
#
# Idempotent and quick when everything is in place: pip runs only when an installed
# version differs from a pin, npm only when node_modules was not installed from the
# current package.json and lock. Run by scripts/test.sh; run it by hand before
# `cargo test` if you run the tests without that script.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SDK_DIR="$REPO_ROOT/tests/sdk"
# as_root, apt_install, pip_install, step, die.
# shellcheck source=scripts/lib/services.sh
source "$REPO_ROOT/scripts/lib/services.sh"

# posthog-node's own floor (its package.json "engines").
NODE_MAJOR_MIN=20

# Succeeds when every `name==version` pin in requirements.txt is installed at exactly
# that version.
python_pins_satisfied() {
  python3 - "$SDK_DIR/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        if version(name.strip()) != pinned.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

ensure_python_clients() {
  command -v python3 >/dev/null || apt_install python3 python3-pip
  if python_pins_satisfied; then return; fi
  step "installing Python SDK clients (tests/sdk/requirements.txt)"
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  pip_install -r "$SDK_DIR/requirements.txt"
  python_pins_satisfied || die "pip installed tests/sdk/requirements.txt, but the pinned versions are still not importable by python3"
}

ensure_node() {
  local missing=()
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if ((major < NODE_MAJOR_MIN)); then
    echo "warning: node $(node --version) is older than posthog-node supports (>= $NODE_MAJOR_MIN)" >&2
  fi
}

# A fingerprint of what node_modules must have been installed from.
node_fingerprint() {
  cat "$SDK_DIR/package.json" "$SDK_DIR/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1
  node --version
}

ensure_node_clients() {
  ensure_node
  local stamp="$SDK_DIR/node_modules/.install-fingerprint"
  local want
  want=$(node_fingerprint)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  step "installing Node SDK clients (tests/sdk/package.json)"
  if [[ -f $SDK_DIR/package-lock.json ]]; then
    (cd "$SDK_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd "$SDK_DIR" && npm install --no-audit --no-fund --loglevel=error \
      --omit-lockfile-registry-resolved)
  fi
  node_fingerprint >"$stamp"
}

ensure_chromium() {
  command -v chromium >/dev/null && return
  step "installing Chromium (Debian package) for the status page browser test"
  apt_install chromium fonts-liberation
}

main() {
  ensure_python_clients
  ensure_node_clients
  ensure_chromium
}

main "$@"
