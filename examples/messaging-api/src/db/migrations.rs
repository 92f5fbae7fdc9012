//! The example's own migration history, in `messaging_api_migrations`:
//! apart from tollgate-sql's (which uses sqlx's `_sqlx_migrations`), so
//! either can evolve without the other. Each migration runs once, in one
//! transaction, in version order; concurrent starts of a fleet serialise on
//! the history table's primary key.

use sqlx::AnyPool;

/// (version, description, SQL), oldest first. Never edit a released one: add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "service tables",
        include_str!("../../migrations/0001_service_tables.sql"),
    ),
    (2, "audit log", include_str!("../../migrations/0002_audit_log.sql")),
    (3, "dashboard", include_str!("../../migrations/0003_dashboard.sql")),
];

/// Applies every migration the database has not recorded yet.
pub async fn migrate(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS messaging_api_migrations \
         (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, description, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
        // Claims the version first: a second instance migrating at the same
        // time waits on this row, then finds it taken and skips.
        let claimed = sqlx::query(
            "INSERT INTO messaging_api_migrations (version, description) VALUES ($1, $2) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(*version)
        .bind(*description)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            continue;
        }
        for statement in statements(sql) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(version, description, "migration applied");
    }
    Ok(())
}

// The statements of a migration file, comments dropped (none contains `;`).
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|statement| {
        statement
            .lines()
            .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_migration_has_its_five_tables() {
        let creates = super::statements(super::MIGRATIONS[0].2)
            .filter(|statement| statement.contains("CREATE TABLE"))
            .count();
        assert_eq!(creates, 5);
    }

    #[test]
    fn the_audit_log_migration_adds_one_table_and_two_indexes() {
        let statements: Vec<&str> = super::statements(super::MIGRATIONS[1].2).collect();
        assert_eq!(statements.len(), 3);
        assert!(statements[0].contains("CREATE TABLE api_audit_log ("));
    }

    #[test]
    fn the_dashboard_migration_adds_three_tables_and_two_columns() {
        let statements: Vec<&str> = super::statements(super::MIGRATIONS[2].2).collect();
        let creates = statements.iter().filter(|s| s.contains("CREATE TABLE")).count();
        let alters = statements.iter().filter(|s| s.contains("ALTER TABLE")).count();
        assert_eq!((statements.len(), creates, alters), (7, 3, 2));
    }
}
