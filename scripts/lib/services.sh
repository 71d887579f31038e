# shellcheck shell=bash
# Throwaway services for the test suite, sourced by scripts/test.sh:
#   - a private PostgreSQL cluster with TLS (a self-signed CA signs its
#     certificate, so tests can verify it the way they verify Supabase),
#   - PgBouncer in transaction mode in front of the database the tests use,
#     standing in for Supabase's pooler,
#   - a moto server standing in for AWS.
# Everything lives in one temp dir and on free 127.0.0.1 ports, so runs never
# collide with each other or with a PostgreSQL the machine runs on 5432.
#
#   ensure_service_tools   installs whatever of the above is missing
#   start_test_services    starts them all and exports their addresses
#   stop_test_services     stops them all and removes the temp dir; safe to
#                          call at any point, even before anything started
#
# The caller is expected to run under `set -euo pipefail`.

SERVICES_DIR=""
PG_BINDIR=""
MOTO_PID=""
CURRENT_STEP="setup"

# Announces a step; the last one announced is named if the run fails.
step() {
  # shellcheck disable=SC2034 # read by scripts/test.sh when a run fails
  CURRENT_STEP=$*
  printf '==> %s\n' "$*"
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

APT_LISTS_FRESH=""
# Installs Debian packages, refreshing the package lists at most once and only
# when something is actually missing (a fresh image has no lists at all).
apt_install() {
  if [[ -z $APT_LISTS_FRESH ]]; then
    as_root apt-get update -qq
    APT_LISTS_FRESH=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@"
}

pip_install() {
  # Debian's own python3 is "externally managed" (PEP 668) and refuses plain
  # installs; on a throwaway test machine overriding that is fine.
  python3 -m pip install --quiet "$@" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$@"
}

# The bindir of the newest installed PostgreSQL server, or nothing. Debian
# keeps initdb and pg_ctl off PATH, and /usr/local/bin may hold wrappers that
# behave differently. Looking for initdb skips bindirs of client-only installs.
newest_pg_bindir() {
  local initdb
  initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  if [[ -x $initdb ]]; then echo "${initdb%/initdb}"; fi
}

# pgbouncer lives in /usr/sbin, which a non-root PATH usually lacks.
pgbouncer_bin() {
  command -v pgbouncer || echo /usr/sbin/pgbouncer
}

ensure_service_tools() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  [[ -n $(newest_pg_bindir) ]] || missing+=(postgresql)
  [[ -x $(pgbouncer_bin) ]] || missing+=(pgbouncer)
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  PG_BINDIR=$(newest_pg_bindir)
  [[ -n $PG_BINDIR ]] || die "no PostgreSQL server found in /usr/lib/postgresql"

  if ! python3 -c 'import moto.server' 2>/dev/null; then
    step "installing moto[server]"
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    pip_install 'moto[server]'
  fi
}

# Retries a command every 0.2 s until it succeeds or $1 seconds have passed.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Shows the end of a log, which is what explains a failed start, and dies.
# (The log itself goes away with the temp dir when the script exits.)
die_with_log() {
  local log=$1
  shift
  if [[ -s $log ]]; then
    printf -- '--- last lines of %s ---\n' "${log##*/}" >&2
    tail -n 40 "$log" >&2
  fi
  die "$*"
}

# Runs a quiet-on-success command with its chatter sent to the log file $1.
run_logged() {
  local log=$1
  shift
  "$@" >>"$log" 2>&1 || die_with_log "$log" "failed: $*"
}

# Asks the kernel for a port nobody listens on. Services started later can't
# be handed a port an earlier one holds, so the ports never clash.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL and PgBouncer refuse to run as root, so as root they run as the
# `postgres` OS user, from inside the temp dir: the caller's cwd (say /root)
# may be unreadable for that user.
as_cluster_user() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd "$SERVICES_DIR" && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

make_services_dir() {
  SERVICES_DIR=$(mktemp -d /tmp/agents-test-pg.XXXXXX)
  if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres: "$SERVICES_DIR"
  fi
}

# A CA plus a server certificate for localhost signed by it: tests hand the
# CA file to their client as its only root, like Supabase's bundled CA.
# Certificates are v3 with CA:FALSE and a SAN, as rustls/webpki insist. The
# SAN names localhost only, so tests can check that 127.0.0.1 is refused.
make_tls_certificates() {
  local dir=$SERVICES_DIR log=$SERVICES_DIR/openssl.log
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc)
  run_logged "$log" openssl req -x509 "${ec[@]}" -sha256 -days 2 \
    -subj "/CN=agents test CA" \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/ca.key" -out "$dir/ca.pem"
  run_logged "$log" openssl req -new "${ec[@]}" -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr"
  printf '%s\n' \
    basicConstraints=critical,CA:FALSE \
    keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth \
    subjectAltName=DNS:localhost \
    subjectKeyIdentifier=hash \
    authorityKeyIdentifier=keyid >"$dir/server.ext"
  run_logged "$log" openssl x509 -req -in "$dir/server.csr" -sha256 -days 2 \
    -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -extfile "$dir/server.ext" \
    -out "$dir/server.crt"
  # PostgreSQL refuses a key that others can read or that it does not own.
  chmod 600 "$dir/server.key"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir/server.key" "$dir/server.crt"; fi
}

start_postgres() {
  local data=$SERVICES_DIR/pgdata log=$SERVICES_DIR/postgres.log
  PG_PORT=$(free_port)
  make_tls_certificates
  # --no-sync only skips initdb's final flush; the server keeps its defaults.
  run_logged "$SERVICES_DIR/initdb.log" as_cluster_user "$PG_BINDIR/initdb" -D "$data" \
    -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync
  # 'localhost' covers 127.0.0.1 (DATABASE_URL) and, where localhost also
  # resolves to ::1, the address a client may try first for the TLS URL.
  cat >>"$data/postgresql.conf" <<EOF
listen_addresses = 'localhost'
port = $PG_PORT
unix_socket_directories = '$SERVICES_DIR'
max_connections = 200
ssl = on
ssl_cert_file = '$SERVICES_DIR/server.crt'
ssl_key_file = '$SERVICES_DIR/server.key'
EOF
  # The server log is written by the cluster user, so it must not be created
  # beforehand by us; pg_ctl's own errors still reach stderr.
  as_cluster_user "$PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null ||
    die_with_log "$log" "PostgreSQL did not start"
}

# PgBouncer's `[databases]` fallback entry pointing at the server behind a
# postgres:// URL. The URL's database is left out on purpose: `*` then serves
# any database name, including ones the tests create after start-up.
bouncer_target_of() {
  python3 - "$1" <<'PY'
import sys
from urllib.parse import unquote, urlsplit

url = urlsplit(sys.argv[1])
fields = {
    "host": url.hostname or "127.0.0.1",
    "port": str(url.port or 5432),
    "user": unquote(url.username or "postgres"),
}
if url.password:
    fields["password"] = unquote(url.password)
# PgBouncer quotes connect-string values like SQL literals.
print(" ".join(f"{k}='{v.replace(chr(39), chr(39) * 2)}'" for k, v in fields.items()))
PY
}

start_pgbouncer() {
  local target=$1 ini=$SERVICES_DIR/pgbouncer.ini log=$SERVICES_DIR/pgbouncer.log
  BOUNCER_PORT=$(free_port)
  # server_idle_timeout is short because every test creates its own database:
  # with the default 600 s, each finished test's idle server connections
  # would keep backends busy (exhausting max_connections over a long run)
  # and make a DROP DATABASE of it fail as "being accessed by other users".
  cat >"$ini" <<EOF
[databases]
* = $target

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 5
max_client_conn = 500
server_idle_timeout = 5
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
logfile = $log
pidfile = $SERVICES_DIR/pgbouncer.pid
EOF
  # As with PostgreSQL, the log file is left for PgBouncer itself to create.
  as_cluster_user "$(pgbouncer_bin)" -d -q "$ini" ||
    die_with_log "$log" "PgBouncer did not start"
  wait_for 30 "$PG_BINDIR/psql" -X -q -c 'select 1' \
    "postgres://postgres@127.0.0.1:$BOUNCER_PORT/postgres" ||
    die_with_log "$log" "PgBouncer did not answer on port $BOUNCER_PORT"
}

start_moto() {
  local log=$SERVICES_DIR/moto.log
  MOTO_PORT=$(free_port)
  python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$log" 2>&1 </dev/null &
  MOTO_PID=$!
  # Any HTTP answer will do: it means moto is up and routing requests.
  wait_for 60 curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" ||
    die_with_log "$log" "moto did not answer on port $MOTO_PORT"
}

# Starts the services and exports where they are. An externally supplied
# DATABASE_URL stays the tests' database (and PgBouncer's backend); the
# private cluster then only serves the TLS test.
start_test_services() {
  local external_database_url=${DATABASE_URL:-}
  local started=$SECONDS
  make_services_dir
  step "starting PostgreSQL with TLS"
  start_postgres
  export DATABASE_URL=${external_database_url:-"postgres://postgres@127.0.0.1:$PG_PORT/postgres"}
  export TEST_TLS_DATABASE_URL="postgres://postgres@localhost:$PG_PORT/postgres?sslmode=require"
  export TEST_TLS_CA_FILE=$SERVICES_DIR/ca.pem

  step "starting PgBouncer"
  start_pgbouncer "$(bouncer_target_of "$DATABASE_URL")"
  export PGBOUNCER_DATABASE_URL="postgres://postgres@127.0.0.1:$BOUNCER_PORT/postgres"

  step "starting moto"
  start_moto
  export MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
  # moto accepts any credentials; the AWS SDK just needs some to sign with.
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
  export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
  export AWS_REGION=${AWS_REGION:-us-east-1}

  printf '    services up in %ss: postgres :%s, pgbouncer :%s, moto :%s (files in %s)\n' \
    $((SECONDS - started)) "$PG_PORT" "$BOUNCER_PORT" "$MOTO_PORT" "$SERVICES_DIR"
}

# Waits up to 10 s for a process to exit, so the temp dir it writes to can go.
wait_for_exit() {
  local pid=$1 tries=50
  while kill -0 "$pid" 2>/dev/null && ((tries-- > 0)); do sleep 0.2; done
}

stop_test_services() {
  # Best effort from here on: one service failing to stop must not keep the
  # others running.
  set +e
  if [[ -n $MOTO_PID ]]; then
    kill "$MOTO_PID" 2>/dev/null
    wait "$MOTO_PID" 2>/dev/null
    MOTO_PID=""
  fi
  [[ -n $SERVICES_DIR && -d $SERVICES_DIR ]] || return 0
  local bouncer_pid
  bouncer_pid=$(cat "$SERVICES_DIR/pgbouncer.pid" 2>/dev/null)
  if [[ -n $bouncer_pid ]]; then
    kill -TERM "$bouncer_pid" 2>/dev/null # SIGTERM: immediate shutdown
    wait_for_exit "$bouncer_pid"
  fi
  if [[ -f $SERVICES_DIR/pgdata/postmaster.pid ]]; then
    as_cluster_user "$PG_BINDIR/pg_ctl" -D "$SERVICES_DIR/pgdata" \
      stop -m immediate -w >/dev/null
  fi
  rm -rf "$SERVICES_DIR"
  SERVICES_DIR=""
}
