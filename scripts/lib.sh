# SPDX-License-Identifier: Apache-2.0
# Shared by scripts/run and scripts/test: package installation, builds and a
# private PostgreSQL cluster. Source it from the repository root.

# Debian 12 packages the build, the tests and the private database need.
GRIDEX_PACKAGES=(
	build-essential meson ninja-build pkg-config
	protobuf-c-compiler libprotobuf-c-dev libevent-dev libssl-dev libpq-dev
	libsodium-dev libjansson-dev check clang-format clang libclang-rt-14-dev
	postgresql postgresql-client openssl
	protobuf-compiler python3 python3-protobuf python3-nacl python3-pytest valgrind
	nodejs chromium fonts-dejavu-core
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $* (install sudo or run as root)"
	fi
}

# Installs whatever of GRIDEX_PACKAGES is missing (apt-get update first).
ensure_packages() {
	command -v dpkg-query >/dev/null ||
		die "this script installs Debian packages; install by hand: ${GRIDEX_PACKAGES[*]}"
	local missing=() p
	for p in "${GRIDEX_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}"
}

# build_dir <dir> [meson options...]: configures once, then compiles.
build_dir() {
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		say "configuring $dir"
		meson setup "$dir" "$@" >/dev/null
	fi
	say "building $dir"
	meson compile -C "$dir" >/dev/null || meson compile -C "$dir"
}

# ---------- private PostgreSQL ----------
# pg_start <base dir> <port>: creates (once) and starts a cluster listening on
# a Unix socket in <base>/sock only, database and superuser "gridex", and sets
# GRIDEX_PG_BASE and GRIDEX_DATABASE_URL. As root the cluster belongs to the
# postgres system user, because initdb and postgres refuse to run as root.

pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found (package postgresql)"
	echo "$d"
}

pg_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_start() {
	local base=$1 port=$2 bin
	bin=$(pg_bindir)
	mkdir -p "$base"
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || die "no postgres system user (package postgresql)"
		chown postgres: "$base"
		if ! runuser -u postgres -- test -w "$base"; then
			# A checkout under a private home (e.g. /root): the postgres user cannot
			# reach it, so the cluster lives in /var/tmp instead.
			base=/var/tmp/gridex-pg-$(printf '%s' "$base" | sha256sum | cut -c1-12)
			mkdir -p "$base"
			chown postgres: "$base"
			say "user postgres cannot reach the checkout; cluster in $base"
		fi
	fi
	if [ ! -f "$base/data/PG_VERSION" ]; then
		say "creating a private PostgreSQL cluster in $base"
		pg_as_owner mkdir -p "$base/sock"
		pg_as_owner "$bin/initdb" -D "$base/data" -U gridex -A trust -E UTF8 --no-locale \
			>"$base/initdb.log" 2>&1 || {
			cat "$base/initdb.log" >&2
			die "initdb failed"
		}
	fi
	pg_as_owner mkdir -p "$base/sock"
	if ! pg_as_owner "$bin/pg_ctl" -D "$base/data" status >/dev/null 2>&1; then
		pg_as_owner "$bin/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 \
			-o "-k $base/sock -p $port -c listen_addresses=''" start >/dev/null ||
			{
				tail -n 20 "$base/postgres.log" >&2
				die "PostgreSQL did not start (log: $base/postgres.log)"
			}
	fi
	GRIDEX_PG_BASE=$base
	GRIDEX_DATABASE_URL="postgresql:///gridex?host=$base/sock&port=$port&user=gridex"
	if ! psql "postgresql:///postgres?host=$base/sock&port=$port&user=gridex" -Atqc \
		"select 1 from pg_database where datname = 'gridex'" | grep -q 1; then
		psql "postgresql:///postgres?host=$base/sock&port=$port&user=gridex" -qc \
			"create database gridex" >/dev/null
	fi
	export GRIDEX_DATABASE_URL
}

# pg_restart_command <base>: a shell command that restarts the cluster (for tests).
pg_restart_command() {
	local base=$1 runas=""
	[ "$(id -u)" = 0 ] && runas="runuser -u postgres -- "
	echo "$runas$(pg_bindir)/pg_ctl -D $base/data -m fast -w restart >/dev/null"
}

# pg_outage_command <base> <port> <seconds>: a shell command that stops the
# cluster, waits, and starts it again as pg_start does (for tests).
pg_outage_command() {
	local base=$1 port=$2 secs=$3 runas=""
	[ "$(id -u)" = 0 ] && runas="runuser -u postgres -- "
	local ctl="$runas$(pg_bindir)/pg_ctl -D $base/data"
	echo "$ctl -m fast -w stop >/dev/null && sleep $secs && $ctl -l $base/postgres.log -w -t 60 -o \"-k $base/sock -p $port -c listen_addresses=''\" start >/dev/null"
}

pg_stop() {
	local base=${1:-${GRIDEX_PG_BASE:-}}
	[ -n "$base" ] && [ -f "$base/data/PG_VERSION" ] || return 0
	pg_as_owner "$(pg_bindir)/pg_ctl" -D "$base/data" -m fast -w stop >/dev/null 2>&1 || true
}
