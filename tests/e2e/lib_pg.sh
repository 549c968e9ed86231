# A private PostgreSQL 15 cluster for a test: initdb and pg_ctl in a
# temporary directory owned by the postgres user (the server refuses to run
# as root), listening on a free loopback port with its socket in that
# directory; stopped (immediate) by stop_pg and at exit.
# start_pg sets PG_PORT, PG_DIR and PG_URI (postgresql://hikyaku@127.0.0.1:PORT/hikyaku,
# the password in a passfile named by the URI).
# shellcheck shell=bash
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=""
PG_PORT=""
PG_URI=""

_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_pg: a new cluster (the first call) or the same one again.
start_pg() {
	if [ -z "$PG_DIR" ]; then
		PG_DIR=$(mktemp -d /tmp/hikyaku-pg.XXXXXX)
		[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
		PG_PORT=$(free_port)
		echo 'hikyaku-pw' >"$PG_DIR/pw"
		[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR/pw"
		_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --pwfile="$PG_DIR/pw" \
			-E UTF8 --no-locale >"$PG_DIR/initdb.out" 2>&1 || { cat "$PG_DIR/initdb.out"; return 1; }
		# Password authentication over TCP, as a real site has it.
		cat >"$PG_DIR/data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
		[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR/data/pg_hba.conf"
	fi
	_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c fsync=off" \
		start >"$PG_DIR/pg_ctl.out" 2>&1 || { cat "$PG_DIR/pg_ctl.out" "$PG_DIR/server.log"; return 1; }
	if [ ! -e "$PG_DIR/created" ]; then
		_pg "$PG_BIN/../bin/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -qAt \
			-c "CREATE ROLE hikyaku LOGIN PASSWORD 'hikyaku-pw'" \
			-c "CREATE DATABASE hikyaku OWNER hikyaku" >"$PG_DIR/create.out" 2>&1 ||
			{ cat "$PG_DIR/create.out"; return 1; }
		touch "$PG_DIR/created"
		# The daemon's user reads it (libpq refuses a passfile others can read).
		echo "127.0.0.1:$PG_PORT:hikyaku:hikyaku:hikyaku-pw" >"$T/pgpass"
		chmod 600 "$T/pgpass"
	fi
	PG_URI="postgresql://hikyaku@127.0.0.1:$PG_PORT/hikyaku?passfile=$T/pgpass"
}

stop_pg() {
	[ -n "$PG_DIR" ] && [ -e "$PG_DIR/data/postmaster.pid" ] || return 0
	_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
}

# psql as the hikyaku role, on the socket.
pg_sql() {
	_pg "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d hikyaku -qAt -c "$1"
}

cleanup_pg() {
	stop_pg
	[ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
}

# Chained in front of the EXIT trap that is there already.
# shellcheck disable=SC2064
_pg_chain_exit_trap() {
	eval "set -- $(trap -p EXIT)"
	trap "cleanup_pg; ${3:-}" EXIT
}
_pg_chain_exit_trap
