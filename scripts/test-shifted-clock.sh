#!/usr/bin/env bash
# Runs every test of the suite with every process's clock shifted: the tests, the throwaway
# PostgreSQL and PgBouncer, moto, the SDK clients. The shift is an offset (libfaketime's
# "+N" seconds), so all processes agree with each other, and by default it puts "now" at
# 23:52 UTC tomorrow, so the run crosses midnight UTC while it works. A test that passes at
# 15:00 but not at 23:59, or that compares a wall-clock date with a fixed one, fails here.
#
#   ./scripts/test-shifted-clock.sh                         # tomorrow, 23:52 UTC
#   ./scripts/test-shifted-clock.sh "2026-12-31 23:50:00"   # any UTC instant
#
# The toolchain must not run under libfaketime (rustc's and clippy's threads deadlock in its
# hooks), so the tests are built first on the real clock and their binaries are then run
# directly, the way `cargo test` runs them: from their package's directory, the integration
# tests' pg:: part a second time through PgBouncer.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
source "$REPO_ROOT/scripts/lib/services.sh"

command -v faketime >/dev/null || apt_install faketime
library=$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true)
[[ -n $library ]] || die "libfaketime.so.1 not found (Debian package libfaketime)"
command -v jq >/dev/null || apt_install jq

cd "$REPO_ROOT"
ensure_service_tools
step "installing SDK clients"
"$REPO_ROOT/scripts/install-sdk-clients.sh"
step "building the tests on the real clock"
# Each line: the package's directory, then the test binary.
mapfile -t binaries < <(
  cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
           | "\(.manifest_path | sub("/Cargo.toml$"; "")) \(.executable)"'
)
((${#binaries[@]})) || die "no test binaries were built"

target=${1:-"$(date -u -d tomorrow +%F) 23:52:00"}
offset=$(($(date -u -d "$target" +%s) - $(date -u +%s)))
sign=$( ((offset >= 0)) && echo + || true)
step "shifting every clock by ${offset}s: now is $(date -u -d "@$(($(date +%s) + offset))")"
# Monotonic clocks stay real: timeouts and sleeps measure real time, as they must.
export LD_PRELOAD=$library FAKETIME="${sign}${offset}" FAKETIME_DONT_FAKE_MONOTONIC=1

# libfaketime stops PostgreSQL's own timers: under it `SET statement_timeout = '1s'; SELECT
# pg_sleep(5)` runs the full 5 s, and neither lock_timeout nor deadlock_timeout (the wait
# before deadlock detection) ever fires. The tests that prove those
# budgets (a held lock answers 503 in time) are therefore left to scripts/test.sh, on the real
# clock, and named here rather than silently lost.
needs_postgres_timers=(
  pg::analytics::a_held_lock_turns_into_a_503_with_retry_after
  pg::billing::a_held_lock_answers_503_with_retry_after_within_the_budget_and_stalls_no_one_else
  pg::email::held_locks_answer_503_with_retry_after_within_the_budget
  pg::shopify::transient_failures_answer_503_with_retry_after_and_the_retry_applies
  bounded_waits::a_held_lock_slows_only_the_requests_that_need_it
  pg::retry::deadlocks_are_transient
)
skips=()
for name in "${needs_postgres_timers[@]}"; do skips+=(--skip "$name"); done

unset DATABASE_URL
trap stop_test_services EXIT
start_test_services
date -u

for line in "${binaries[@]}"; do
  directory=${line%% *} binary=${line#* }
  step "$(basename "$binary")"
  (cd "$directory" && "$binary" "${skips[@]}")
  if [[ $(basename "$binary") == integration-* ]]; then
    step "$(basename "$binary") pg:: (through PgBouncer)"
    (cd "$directory" && DATABASE_URL="$PGBOUNCER_DATABASE_URL" "$binary" pg:: "${skips[@]}")
  fi
done
echo "==> every test passed with the clock at $(date -u), but ${#needs_postgres_timers[@]} that need PostgreSQL's timers"
