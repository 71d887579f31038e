#!/usr/bin/env bash
# The one command that runs the whole test suite, on a developer machine and
# in CI (.ci/run). It installs what is missing, starts throwaway services
# (PostgreSQL with TLS, PgBouncer, moto; see scripts/lib/services.sh), runs
# rustfmt, clippy, the tests (directly, then the database tests again through
# PgBouncer) and cfn-lint, and stops every service again however it exits.
#
# Set DATABASE_URL to run the tests against your own PostgreSQL instead of
# the private cluster; the tests create a fresh database per test from it.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
source "$REPO_ROOT/scripts/lib/services.sh"

ensure_rust_tools() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if ((${#missing[@]})); then
    step "installing rustup components ${missing[*]}"
    rustup component add "${missing[@]}"
  fi
}

ensure_cfn_lint() {
  command -v cfn-lint >/dev/null && return
  step "installing cfn-lint"
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  pip_install cfn-lint
  # A non-root install lands in the user's script dir, often not on PATH.
  command -v cfn-lint >/dev/null ||
    PATH="$(python3 -m site --user-base)/bin:$PATH"
  command -v cfn-lint >/dev/null || die "cfn-lint installed but not found on PATH"
}

run_checks() {
  local locked=()
  [[ -f Cargo.lock ]] && locked=(--locked)

  step "cargo fmt --check"
  cargo fmt --all -- --check

  step "cargo clippy"
  cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings

  step "cargo test (direct connection)"
  cargo test --workspace "${locked[@]}"

  # Supabase's pooler runs in transaction mode: no session state survives a
  # transaction, so the database tests must also pass through PgBouncer.
  step "cargo test pg:: (through PgBouncer)"
  DATABASE_URL="$PGBOUNCER_DATABASE_URL" \
    cargo test "${locked[@]}" -p integration-tests --test integration -- pg::

  step "cfn-lint infra/template.yaml"
  cfn-lint infra/template.yaml
}

# Runs on every exit: stops the services, then says how the run went.
finish() {
  local status=$?
  stop_test_services
  if ((status == 0)); then
    echo "==> all checks passed in ${SECONDS}s"
  else
    echo "==> FAILED at: $CURRENT_STEP (exit $status, after ${SECONDS}s)" >&2
  fi
  exit "$status"
}

main() {
  cd "$REPO_ROOT"
  trap finish EXIT
  # Turn signals into an exit so that `finish` runs exactly once.
  trap 'exit 130' INT
  trap 'exit 143' TERM

  step "checking tools"
  ensure_service_tools
  ensure_rust_tools
  ensure_cfn_lint
  step "installing SDK clients"; "$REPO_ROOT/scripts/install-sdk-clients.sh"

  start_test_services
  run_checks
}

main "$@"
