#!/usr/bin/env bash
# Runs the whole test command (scripts/test.sh) with every process's clock shifted: the
# tests, the throwaway PostgreSQL and PgBouncer, moto, the SDK clients. The shift is an
# offset (libfaketime's "+N" seconds), so all processes agree with each other, and by default
# it puts "now" at 23:52 UTC tomorrow, so the run crosses midnight UTC while it works. A test
# that passes at 15:00 but not at 23:59, or that compares a wall-clock date with a fixed one,
# fails here.
#
#   ./scripts/test-shifted-clock.sh                         # tomorrow, 23:52 UTC
#   ./scripts/test-shifted-clock.sh "2026-12-31 23:50:00"   # any UTC instant
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
source "$REPO_ROOT/scripts/lib/services.sh"

command -v faketime >/dev/null || apt_install faketime
library=$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true)
[[ -n $library ]] || die "libfaketime.so.1 not found (Debian package libfaketime)"

# The toolchain is what must not run under libfaketime: rustc's threads can deadlock in its
# hooks. So everything is built first, on the real clock, and the toolchain's own programs are
# left unfaked (FAKETIME_SKIP_CMDS) while the tests, servers and clients they start are shifted.
cd "$REPO_ROOT"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-run

target=${1:-"$(date -u -d tomorrow +%F) 23:52:00"}
offset=$(($(date -u -d "$target" +%s) - $(date -u +%s)))
sign=$( ((offset >= 0)) && echo + || true)
echo "==> shifting every clock by ${offset}s: now is $(date -u -d "@$(($(date +%s) + offset))")"

# Monotonic clocks stay real: timeouts and sleeps measure real time, as they must.
export LD_PRELOAD=$library FAKETIME="${sign}${offset}" FAKETIME_DONT_FAKE_MONOTONIC=1
export FAKETIME_SKIP_CMDS=cargo,rustc,clippy-driver,cargo-clippy,rustfmt,cargo-fmt,rustup
exec "$REPO_ROOT/scripts/test.sh"
