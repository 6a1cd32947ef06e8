#!/usr/bin/env bash
# prereqs.sh: install what up.sh needs from the OS and cannot build itself, on a Debian machine as root:
# the PostgreSQL 15 server binaries (apt package postgresql-15). Idempotent, and a no-op when they exist.
#
# No system cluster is wanted (up.sh runs a private one): when createcluster.conf does not exist yet,
# it is written with `create_main_cluster = false` before the package is installed, so the package
# creates and starts no cluster of its own.
# Python 3.12 is not installed here: up.sh takes it from pyenv, PATH or REALSTACK_PYTHON_BIN.
set -euo pipefail

have_pg() {
  local d
  for d in "${REALSTACK_PG_BIN:-}" /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ] && return 0
  done
  return 1
}

if have_pg; then
  echo "realstack prereqs: PostgreSQL server binaries present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "realstack prereqs: no PostgreSQL server binaries and cannot apt-get install them (not root/Debian)" >&2
  exit 1
fi
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  printf '# written by realstack/prereqs.sh: the tests run their own private cluster\ncreate_main_cluster = false\n' \
    >/etc/postgresql-common/createcluster.conf
fi
echo "realstack prereqs: apt-get install postgresql-15"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
have_pg || { echo "realstack prereqs: postgresql-15 installed but no server binaries found" >&2; exit 1; }
echo "realstack prereqs: done"
