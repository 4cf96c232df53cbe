#!/bin/bash
# Creates the two database users with least privileges (users.sql.template beside this file):
#   DAGSTER_MYSQL_USER    on DAGSTER_MYSQL_DB   (default dagster_storage) only
#   WAREHOUSE_MYSQL_USER  on WAREHOUSE_MYSQL_DB (default warehouse) only
# with the passwords from the environment (.env -> docker-compose `mysql` service).
#
# Run by the official mysql image once, after 01-databases.sql, on an empty data volume (the
# entrypoint sources *.sh files and provides docker_process_sql, which logs in as root without
# putting the password on a command line). Run it again to tighten an existing deployment:
#   docker compose exec mysql bash /docker-entrypoint-initdb.d/02-users.sh
# (No `set -u` here: the file is sourced by the entrypoint.)

: "${DAGSTER_MYSQL_USER:?}" "${DAGSTER_MYSQL_PASSWORD:?}"
: "${WAREHOUSE_MYSQL_USER:?}" "${WAREHOUSE_MYSQL_PASSWORD:?}"
DAGSTER_MYSQL_DB="${DAGSTER_MYSQL_DB:-dagster_storage}"
WAREHOUSE_MYSQL_DB="${WAREHOUSE_MYSQL_DB:-warehouse}"

# The values are written into SQL literals below: accept only the URL-safe characters that
# .env.example asks for (they are embedded in connection URLs too).
for name in DAGSTER_MYSQL_USER DAGSTER_MYSQL_PASSWORD DAGSTER_MYSQL_DB \
            WAREHOUSE_MYSQL_USER WAREHOUSE_MYSQL_PASSWORD WAREHOUSE_MYSQL_DB; do
	if [[ ! "${!name}" =~ ^[A-Za-z0-9_-]+$ ]]; then
		echo "02-users.sh: $name may only contain letters, digits, - and _" >&2
		exit 1
	fi
done

if ! declare -F docker_process_sql >/dev/null; then
	# Run by hand (not sourced by the entrypoint): log in as root through the socket.
	docker_process_sql() {
		mysql --defaults-extra-file=<(printf '[client]\npassword=%s\n' "${MYSQL_ROOT_PASSWORD}") \
			--protocol=socket -uroot "$@"
	}
fi

{
	printf "SET @dagster_db = '%s', @dagster_user = '%s', @dagster_password = '%s';\n" \
		"$DAGSTER_MYSQL_DB" "$DAGSTER_MYSQL_USER" "$DAGSTER_MYSQL_PASSWORD"
	printf "SET @warehouse_db = '%s', @warehouse_user = '%s', @warehouse_password = '%s';\n" \
		"$WAREHOUSE_MYSQL_DB" "$WAREHOUSE_MYSQL_USER" "$WAREHOUSE_MYSQL_PASSWORD"
	cat "$(dirname "${BASH_SOURCE[0]}")/users.sql.template"
} | docker_process_sql
