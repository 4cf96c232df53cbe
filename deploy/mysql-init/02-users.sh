#!/bin/bash
# Runs once, after 01-databases.sql, on an empty data volume (official mysql image; the
# entrypoint sources *.sh files that are not executable). Creates one user per database with
# the passwords from the environment (.env -> docker-compose `mysql` service):
#   dagster   -> ALL on dagster_storage  (Dagster creates and migrates its own tables)
#   warehouse -> ALL on warehouse        (the IO manager creates tables and replaces partitions)
# (No `set -u` here: the file is sourced by the entrypoint.)
# Rotating a password later: see docs/DEPLOYMENT.md, "Rotating credentials".

: "${DAGSTER_MYSQL_USER:?}" "${DAGSTER_MYSQL_PASSWORD:?}"
: "${WAREHOUSE_MYSQL_USER:?}" "${WAREHOUSE_MYSQL_PASSWORD:?}"

mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" <<-EOSQL
	CREATE USER IF NOT EXISTS '${DAGSTER_MYSQL_USER}'@'%' IDENTIFIED BY '${DAGSTER_MYSQL_PASSWORD}';
	GRANT ALL PRIVILEGES ON \`dagster_storage\`.* TO '${DAGSTER_MYSQL_USER}'@'%';
	CREATE USER IF NOT EXISTS '${WAREHOUSE_MYSQL_USER}'@'%' IDENTIFIED BY '${WAREHOUSE_MYSQL_PASSWORD}';
	GRANT ALL PRIVILEGES ON \`warehouse\`.* TO '${WAREHOUSE_MYSQL_USER}'@'%';
	FLUSH PRIVILEGES;
EOSQL
