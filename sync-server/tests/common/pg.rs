#![allow(dead_code)]
//! PostgreSQL test databases: each test gets its own database (random name, dropped
//! afterwards) on the cluster named by `FIELDSYNC_TEST_DATABASE_URL`
//! (scripts/test-postgres.sh starts one and sets it).
//!
//! Unset: the PostgreSQL tests fail when `CI` is set, and otherwise print why and return.
//! Only call these from plain threads (the blocking client cannot run inside async tasks).

use postgres::NoTls;

pub const URL_VAR: &str = "FIELDSYNC_TEST_DATABASE_URL";

/// The cluster URL, or `None` (with a message) when PostgreSQL tests are not configured.
pub fn cluster_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{URL_VAR} is not set, so {test} cannot run against PostgreSQL: CI must run the \
                     PostgreSQL suites through scripts/test-postgres.sh"
                );
            }
            eprintln!(
                "SKIPPED {test} on PostgreSQL: {URL_VAR} is not set (scripts/test-postgres.sh sets it)"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// A database of its own, dropped when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    cluster: String,
}

impl TestDb {
    /// `None` when PostgreSQL tests are not configured (see [`cluster_url`]).
    pub fn create(test: &str) -> Option<TestDb> {
        let cluster = cluster_url(test)?;
        Some(Self::create_on(&cluster))
    }

    pub fn create_on(cluster: &str) -> TestDb {
        let name = format!("fs_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        let mut c = postgres::Client::connect(cluster, NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {cluster}: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        TestDb {
            url: with_database(cluster, &name),
            name,
            cluster: cluster.to_string(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let cluster = self.cluster.clone();
        // Not on an async worker: the blocking client runs its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&cluster, NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
        "postgres://u@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
