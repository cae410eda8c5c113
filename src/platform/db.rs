//! The database handle: sea-orm over SQLite (WAL, busy timeout, foreign keys) by default,
//! any sea-orm URL otherwise, with the migrations applied on open. It knows no tables;
//! domains own theirs.

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, SqlxSqliteConnector, TransactionOptions, TransactionTrait,
};

/// The shared connection pool.
pub type Db = DatabaseConnection;

/// Opens the database at `url` and applies pending migrations when `migrate` is set.
pub async fn open(url: &str, max_connections: u32, busy_timeout: Duration, migrate: bool) -> Result<Db, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections.max(1)).min_connections(1).sqlx_logging(false).map_sqlx_sqlite_opts(
        move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL loses no committed transaction on a process crash;
                // FULL also survives power loss at the cost of an fsync per commit.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
                .create_if_missing(true)
        },
    );
    let db = Database::connect(opts).await?;
    if migrate {
        Migrator::up(&db, None).await?;
    }
    Ok(db)
}

/// A handle for one task that writes all the time (the mail committer). On SQLite it is a
/// connection of its own beside the shared pool: SQLite empties a connection's page cache
/// whenever another connection has committed since its last transaction, and the pool
/// hands out its connections in turn, so a writer on the pool reads back every page it
/// touches at every commit; on its own connection its pages stay cached. Other databases,
/// an in-memory SQLite and a connection that cannot be opened give the shared pool.
pub async fn writer(db: &Db) -> Db {
    if db.get_database_backend() != DbBackend::Sqlite {
        return db.clone();
    }
    let options = db.get_sqlite_connection_pool().connect_options();
    if options.get_filename().to_str().is_none_or(|f| f.is_empty() || f.starts_with(":memory:")) {
        return db.clone();
    }
    let pool = SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with((*options).clone()).await;
    match pool {
        Ok(pool) => SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
        Err(e) => {
            tracing::warn!(error = %e, "no connection of its own for a writer; it shares the pool");
            db.clone()
        }
    }
}

/// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock
/// is taken at once, waiting out the busy timeout, instead of failing later when a read
/// snapshot cannot be upgraded to a write. Other databases begin as usual.
pub async fn begin_write(db: &Db) -> Result<DatabaseTransaction, DbErr> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    db.begin_with_options(options).await
}

/// Applies pending migrations; returns how many were applied.
pub async fn migrate(db: &Db) -> Result<usize, DbErr> {
    let pending = Migrator::get_pending_migrations(db).await?.len();
    Migrator::up(db, None).await?;
    Ok(pending)
}

/// Seconds since the Unix epoch: the one time format stored in every table.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Asks the database a trivial question: Ok when it answers.
pub async fn ping(db: &Db) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// `CAST(SUM(col) AS BIGINT)`: SUM of an integer column is `numeric` on PostgreSQL; the
/// cast makes both back-ends give an `i64` (NULL over no rows).
pub fn sum_bigint(col: impl sea_orm::sea_query::IntoColumnRef) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait};
    Expr::col(col).sum().cast_as(Alias::new("BIGINT"))
}
