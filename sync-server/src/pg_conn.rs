//! Pooled PostgreSQL connections that keep their prepared statements.
//!
//! `postgres::Client::query` with SQL text prepares an unnamed statement on every call:
//! a Parse/Describe round trip, then the Bind/Execute one, and the server parses and
//! plans the text again each time. A sync runs a dozen or more statements, all of them
//! again on the next sync. Here each connection keeps the statements it prepared (least
//! recently used out past `STATEMENT_CACHE`), so a statement costs one round trip and
//! PostgreSQL can reuse its plan. The methods keep the names and shapes of the
//! `postgres` client's, so the backend reads the same.

use lru::LruCache;
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use std::num::NonZeroUsize;

/// Prepared statements kept per connection: the distinct statements of a sync, in the
/// scope variants of the pull, with room to spare.
const STATEMENT_CACHE: NonZeroUsize = NonZeroUsize::new(128).unwrap();

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// The statement for `sql`, prepared on this connection once.
fn statement(
    client: &mut impl GenericClient,
    cache: &mut LruCache<String, Statement>,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    cache.put(sql.to_string(), s.clone());
    Ok(s)
}

/// A connection and the statements prepared on it.
///
/// A statement prepared inside a transaction outlives it (prepared statements are not
/// transactional in PostgreSQL), and one that fails to prepare is not kept.
pub struct PgConn {
    client: postgres::Client,
    cache: LruCache<String, Statement>,
}

/// One transaction on a [`PgConn`], using (and adding to) its statements.
pub struct Tx<'c> {
    tx: Transaction<'c>,
    cache: &'c mut LruCache<String, Statement>,
}

/// The statement methods, the same on a connection and on a transaction.
macro_rules! cached_queries {
    ($client:ident) => {
        pub fn query(
            &mut self,
            sql: &str,
            params: Params<'_>,
        ) -> Result<Vec<Row>, postgres::Error> {
            let s = statement(&mut self.$client, &mut self.cache, sql)?;
            self.$client.query(&s, params)
        }

        pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
            let s = statement(&mut self.$client, &mut self.cache, sql)?;
            self.$client.query_one(&s, params)
        }

        pub fn query_opt(
            &mut self,
            sql: &str,
            params: Params<'_>,
        ) -> Result<Option<Row>, postgres::Error> {
            let s = statement(&mut self.$client, &mut self.cache, sql)?;
            self.$client.query_opt(&s, params)
        }

        pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
            let s = statement(&mut self.$client, &mut self.cache, sql)?;
            self.$client.execute(&s, params)
        }
    };
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("prepared", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl PgConn {
    cached_queries!(client);

    /// A READ COMMITTED transaction (the server's default).
    pub fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        Ok(Tx {
            tx: self.client.transaction()?,
            cache: &mut self.cache,
        })
    }

    /// A transaction at `level`, read-only or not.
    pub fn transaction_with(
        &mut self,
        level: IsolationLevel,
        read_only: bool,
    ) -> Result<Tx<'_>, postgres::Error> {
        Ok(Tx {
            tx: self
                .client
                .build_transaction()
                .isolation_level(level)
                .read_only(read_only)
                .start()?,
            cache: &mut self.cache,
        })
    }

    /// How many statements this connection keeps prepared.
    pub fn prepared(&self) -> usize {
        self.cache.len()
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx<'_> {
    cached_queries!(tx);

    pub fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}

/// The pool's connection manager: `r2d2_postgres`'s, with a statement cache per
/// connection.
#[derive(Debug)]
pub struct Manager(PostgresConnectionManager<NoTls>);

impl Manager {
    pub fn new(config: postgres::Config) -> Self {
        Self(PostgresConnectionManager::new(config, NoTls))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.0.connect()?,
            cache: LruCache::new(STATEMENT_CACHE),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}
