# Starts a throwaway PostgreSQL server for Sluice's tests, listening on 127.0.0.1 only.
#
#   source scripts/test-postgres.sh     # starts it; exports SLUICE_TEST_POSTGRES (and SLUICE_TEST_POSTGRES_DATA)
#   swift test                          # the PostgreSQL store tests now run instead of being skipped
#   stop_test_postgres                  # stops it and removes its data folder
#
# Meant to be sourced (by .ci/run too), by root or by any user: as root the server runs as `postgres`.
# It installs PostgreSQL with apt-get when no server binaries are found (root on Debian/Ubuntu only).
# Trust authentication on 127.0.0.1 (except role sluice_pw_test, for the password tests): for tests, never
# for data you care about.

start_test_postgres() {
  local bin initdb
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "test-postgres: PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$initdb" ] || { echo "test-postgres: installing postgresql did not provide initdb" >&2; return 1; }
  fi
  bin=$(dirname "$initdb")
  local as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)

  # The first free port from 5432 (something answering on it means it is taken).
  local port=5432
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

  local data
  data=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
  chmod 755 "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
  "${as[@]}" "$bin/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 --no-locale >"$data/initdb.log" 2>&1 \
    || { cat "$data/initdb.log" >&2; return 1; }
  # Every login is trusted except the role the password tests use, which must give its password.
  sed -i '1i host all sluice_pw_test 127.0.0.1/32 scram-sha-256' "$data/db/pg_hba.conf"
  # A test server: no durability needed, many parallel test connections.
  "${as[@]}" "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { cat "$data/server.log" >&2; return 1; }
  local i
  for i in $(seq 1 60); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || { echo "test-postgres: the server did not become ready" >&2; cat "$data/server.log" >&2; return 1; }

  export SLUICE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
  export SLUICE_TEST_POSTGRES_DATA="$data"
  export SLUICE_TEST_POSTGRES_BIN="$bin"
  echo "test-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $data); SLUICE_TEST_POSTGRES=$SLUICE_TEST_POSTGRES" >&2
}

stop_test_postgres() {
  [ -n "${SLUICE_TEST_POSTGRES_DATA:-}" ] || return 0
  local as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$SLUICE_TEST_POSTGRES_BIN/pg_ctl" -D "$SLUICE_TEST_POSTGRES_DATA/db" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$SLUICE_TEST_POSTGRES_DATA"
  unset SLUICE_TEST_POSTGRES SLUICE_TEST_POSTGRES_DATA SLUICE_TEST_POSTGRES_BIN
}

start_test_postgres
