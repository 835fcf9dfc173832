#!/bin/sh
# pg-fixture.sh start|stop NYX HOME: the PostgreSQL the tests use when
# NYX_TEST_DATABASE_URL is not set: nyx's own embedded cluster, under HOME.
set -e
[ -n "$NYX_TEST_DATABASE_URL" ] && exit 0
action=$1 nyx=$2 home=$3
unset NYX_DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
XDG_DATA_HOME=$home exec "$nyx" db "$action"
