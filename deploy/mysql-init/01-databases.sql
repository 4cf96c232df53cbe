-- Runs once, when the MySQL data volume is empty (files in /docker-entrypoint-initdb.d are
-- executed in name order by the official mysql image).
-- Two databases on one server: Dagster's own run/event/schedule storage, and the warehouse
-- the moocassets assets write to. Users and grants are created by 02-users.sh, because their
-- passwords come from the environment (.env) and must not be committed.
CREATE DATABASE IF NOT EXISTS `dagster_storage` CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;
CREATE DATABASE IF NOT EXISTS `warehouse` CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;
