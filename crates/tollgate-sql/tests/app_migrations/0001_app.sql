-- An application's own migration, kept by sqlx's Migrator in _sqlx_migrations.
CREATE TABLE app_messages (id BIGINT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
