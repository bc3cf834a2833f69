//! `fieldsync-server`: serve the sync API, or run admin commands on the database.

use clap::{Parser, Subcommand};
use fieldsync_core::model::Role;
use fieldsync_server::{
    AppState, Config, PgOptions, PgStore, SqliteStore, Store, admin, api, dashboard, demo, ingest,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "fieldsync-server", version, about = "fieldsync sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory of the SQLite database (unused with --database-url).
        #[arg(long, default_value = "./fieldsync-data")]
        data_dir: PathBuf,
        /// PostgreSQL instead of SQLite: postgres://user:password@host:port/database.
        /// Several instances may serve one database.
        #[arg(long, env = "FIELDSYNC_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// PostgreSQL only: most database connections of this instance.
        #[arg(long, env = "FIELDSYNC_DB_POOL_SIZE", default_value_t = 16)]
        db_pool_size: u32,
        /// Seed demo data and run simulated reps.
        #[arg(long)]
        demo: bool,
        /// Demo only: seed but do not run the simulated reps.
        #[arg(long, requires = "demo")]
        no_simulation: bool,
        /// Most changes per sync response page.
        #[arg(long, default_value_t = 5000)]
        page_changes: usize,
        /// A rep's window: days back and ahead of today, by planned start.
        #[arg(long, default_value_t = 14)]
        window_back_days: i64,
        #[arg(long, default_value_t = 7)]
        window_ahead_days: i64,
        /// Sync requests served at once [default: 4 per CPU]. A sync that finds them all
        /// taken waits up to 2 s for one, then is answered 503 with `Retry-After: 1`
        /// (devices retry by themselves).
        #[arg(
            long,
            env = "FIELDSYNC_MAX_CONCURRENT_SYNCS",
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        max_concurrent_syncs: Option<u32>,
        /// Visits the dashboard's reports keep read between requests (a typical visit
        /// takes up to ~11 KB kept). A report reads again only the visits changed since;
        /// one over more visits than this reads the rest every time.
        #[arg(
            long,
            env = "FIELDSYNC_REPORT_VISITS_KEPT",
            default_value_t = dashboard::read_visits::KEPT as u32,
            value_parser = clap::value_parser!(u32).range(1..=1_000_000)
        )]
        report_visits_kept: u32,
        /// Most Automerge operations one visit's document may hold, over all its pushes
        /// (a typical visit has a few hundred). A push that would go over is rejected for
        /// that visit with a reason that names the limit. At most the default, which is a
        /// quarter of what a device accepts as one document.
        #[arg(
            long,
            env = "FIELDSYNC_MAX_VISIT_OPS",
            default_value_t = ingest::MAX_VISIT_OPS,
            value_parser = clap::value_parser!(u64).range(1..=ingest::MAX_VISIT_OPS)
        )]
        max_visit_ops: u64,
        /// Most bytes of one visit's document (uncompressed; a typical visit is about
        /// 2 KB). At most the default, a quarter of what a device accepts.
        #[arg(
            long,
            env = "FIELDSYNC_MAX_VISIT_BYTES",
            default_value_t = ingest::MAX_VISIT_DOC_BYTES as u64,
            value_parser = clap::value_parser!(u64).range(1024..=ingest::MAX_VISIT_DOC_BYTES as u64)
        )]
        max_visit_bytes: u64,
    },
    /// Administer users, tokens, reference data and backups.
    Admin {
        #[arg(long, default_value = "./fieldsync-data", global = true)]
        data_dir: PathBuf,
        /// PostgreSQL instead of SQLite (see `serve --database-url`).
        #[arg(
            long,
            env = "FIELDSYNC_DATABASE_URL",
            hide_env_values = true,
            global = true
        )]
        database_url: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user (a generated password is printed once when none is given).
    CreateUser {
        #[arg(long)]
        username: String,
        /// rep, manager or admin.
        #[arg(long)]
        role: String,
        /// Comma-separated territory ids.
        #[arg(long, value_delimiter = ',', default_value = "")]
        territories: Vec<String>,
        #[arg(long)]
        password: Option<String>,
    },
    /// Revoke every token of a user, or one token.
    Revoke {
        #[arg(
            long,
            conflicts_with = "token_id",
            required_unless_present = "token_id"
        )]
        username: Option<String>,
        #[arg(long)]
        token_id: Option<String>,
    },
    /// Import reference data, validated whole first and applied in one transaction: a JSON
    /// file replaces all reference data; a stores or a products CSV (recognized by its
    /// `territory_id` or `gtin` column) replaces the stores or the products with its rows.
    /// Prints what changes.
    Import {
        file: PathBuf,
        /// Validate and print what would change, without importing.
        #[arg(long)]
        dry_run: bool,
        /// Remove stores even when they still have open (planned or in-progress) visits: a
        /// phone keeps such a store, flagged closed, while it holds a visit there.
        #[arg(long)]
        allow_removals: bool,
    },
    /// Write a consistent backup of the database (it gets a new epoch when restored).
    /// PostgreSQL: a `pg_dump` custom-format file, restored with `pg_restore`.
    Backup { file: PathBuf },
    /// Give the database a new epoch after restoring it by other means than `admin restore`
    /// (devices then resend what it lacks).
    NewEpoch,
    /// Embedded SQLite: replace the database with a backup written by `admin backup`, with
    /// the server stopped. The backup is checked first, always gets a new epoch (devices
    /// resend what it lacks), and the replaced database is moved aside, not deleted.
    /// PostgreSQL: restore with `pg_restore` (see docs/DEPLOYMENT.md).
    Restore { file: PathBuf },
}

/// The storage backend chosen on the command line.
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Backend {
    fn open(database_url: Option<&str>, data_dir: &Path, pool_size: u32) -> Result<Self, String> {
        match database_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let opts = PgOptions {
                    pool_size,
                    ..PgOptions::default()
                };
                PgStore::connect(url, &opts)
                    .map(Backend::Postgres)
                    .map_err(|e| format!("PostgreSQL: {e}"))
            }
            None => SqliteStore::open_dir(data_dir)
                .map(Backend::Sqlite)
                .map_err(|e| e.to_string()),
        }
    }

    fn store(&self) -> &dyn Store {
        match self {
            Backend::Sqlite(s) => s,
            Backend::Postgres(s) => s,
        }
    }

    fn into_arc(self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => Arc::new(s),
            Backend::Postgres(s) => Arc::new(s),
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The demo's simulated phones migrate their fresh databases: not news.
                .unwrap_or_else(|_| "info,hyper=warn,fieldsync_core::store::schema=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            database_url,
            db_pool_size,
            demo,
            no_simulation,
            page_changes,
            window_back_days,
            window_ahead_days,
            max_concurrent_syncs,
            report_visits_kept,
            max_visit_ops,
            max_visit_bytes,
        } => {
            let defaults = Config::default();
            let config = Config {
                page_changes: page_changes.max(1),
                window_back_days,
                window_ahead_days,
                max_concurrent_syncs: max_concurrent_syncs
                    .map_or(defaults.max_concurrent_syncs, |n| n as usize),
                report_visits_kept: report_visits_kept as usize,
                visit_limits: ingest::VisitLimits {
                    ops: max_visit_ops,
                    // The parser bounds it by a usize constant.
                    doc_bytes: usize::try_from(max_visit_bytes).unwrap_or(usize::MAX),
                },
                ..defaults
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            // Opened before the runtime: the PostgreSQL client blocks.
            let backend = Backend::open(database_url.as_deref(), &data_dir, db_pool_size)?;
            // Held while serving: `admin restore` refuses to replace the database under us.
            let _lock = match backend {
                Backend::Sqlite(_) => Some(admin::lock_data_dir(&data_dir)?),
                Backend::Postgres(_) => None,
            };
            rt.block_on(serve(
                listen,
                backend,
                data_dir,
                demo,
                !no_simulation,
                config,
            ))
        }
        Command::Admin {
            data_dir,
            database_url,
            command: AdminCommand::Restore { file },
        } => {
            if database_url.is_some_and(|u| !u.trim().is_empty()) {
                return Err("admin restore is for the embedded SQLite database; restore a PostgreSQL backup with pg_restore (docs/DEPLOYMENT.md)".into());
            }
            let done = admin::restore(&data_dir, &file)?;
            println!(
                "restored {} into {} with new epoch {}: devices will resend what it lacks",
                file.display(),
                data_dir.display(),
                done.epoch
            );
            if let Some(p) = done.previous {
                println!("the replaced database was moved to {}", p.display());
            }
            Ok(())
        }
        Command::Admin {
            data_dir,
            database_url,
            command,
        } => {
            let backend = Backend::open(database_url.as_deref(), &data_dir, 2)?;
            admin_command(&backend, command)
        }
    }
}

fn admin_command(backend: &Backend, command: AdminCommand) -> Result<(), String> {
    let store = backend.store();
    let now = chrono::Utc::now().timestamp_millis();
    match command {
        AdminCommand::CreateUser {
            username,
            role,
            territories,
            password,
        } => {
            let role = Role::parse(&role).map_err(|e| e.to_string())?;
            let territories: Vec<String> =
                territories.into_iter().filter(|t| !t.is_empty()).collect();
            let generated = password.is_none();
            let pw = admin::create_user(store, &username, role, &territories, password.as_deref())?;
            println!(
                "created {} {username} (territories: {})",
                role.as_str(),
                territories.join(",")
            );
            if generated {
                println!("password (shown once): {pw}");
            }
        }
        AdminCommand::Revoke { username, token_id } => {
            if let Some(u) = username {
                let n = store.revoke_user(&u, now).map_err(|e| e.to_string())?;
                println!("revoked {n} token(s) of {u}");
            } else if let Some(t) = token_id {
                if !store.revoke_token(&t, now).map_err(|e| e.to_string())? {
                    return Err(format!("no live token with id {t}"));
                }
                println!("revoked token {t}");
            }
        }
        AdminCommand::Import {
            file,
            dry_run,
            allow_removals,
        } => match admin::import(store, &file, dry_run, allow_removals) {
            Ok(done) => {
                for c in &done.changes {
                    println!("  {c}");
                }
                if done.changes.is_empty() {
                    println!("  nothing changes");
                }
                for c in &done.closed_with_open_visits {
                    println!("  note: {c}");
                }
                match done.version {
                    Some(v) => {
                        println!("imported {} (reference data version {v})", file.display());
                    }
                    None => println!("{} is valid; dry run: nothing imported", file.display()),
                }
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", file.display());
                }
                return Err(format!(
                    "{} problem(s); nothing was imported",
                    problems.len()
                ));
            }
        },
        AdminCommand::Backup { file } => {
            if file.exists() {
                return Err(format!("{} already exists", file.display()));
            }
            store.backup(&file).map_err(|e| e.to_string())?;
            println!(
                "backup written to {} (it carries a new epoch)",
                file.display()
            );
        }
        AdminCommand::Restore { .. } => {
            return Err("admin restore runs without an open database (see run)".into());
        }
        AdminCommand::NewEpoch => match backend {
            Backend::Postgres(pg) => {
                let epoch = pg.new_epoch().map_err(|e| e.to_string())?;
                println!("new epoch {epoch}: devices will resend what the database lacks");
            }
            Backend::Sqlite(sqlite) => {
                let epoch = sqlite.new_epoch().map_err(|e| e.to_string())?;
                println!("new epoch {epoch}: devices will resend what the database lacks");
            }
        },
    }
    Ok(())
}

async fn serve(
    listen: SocketAddr,
    backend: Backend,
    data_dir: PathBuf,
    demo_mode: bool,
    simulate: bool,
    config: Config,
) -> Result<(), String> {
    let store = backend.into_arc();
    let users = if demo_mode {
        let s = store.clone();
        let dir = data_dir.clone();
        Some(
            tokio::task::spawn_blocking(move || demo::seed(s.as_ref(), &dir))
                .await
                .map_err(|e| e.to_string())??,
        )
    } else {
        None
    };
    let store_for_demo: Arc<dyn Store> = store.clone();
    // Documents stored by an older version get their reads in the background.
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        match fieldsync_server::store::fill_visit_reads(s.as_ref()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(visits = n, "stored the reads of documents stored before"),
            Err(e) => tracing::warn!(error = %e, "storing the reads of older documents stopped"),
        }
    });
    let state = AppState::new(store, config);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    println!("fieldsync-server listening on {base}");
    if let Some(users) = users {
        println!("dashboard: {base}/");
        println!("demo users (username / password / role):");
        for u in &users {
            println!(
                "  {:<10} {:<18} {}",
                u.username,
                u.password,
                u.role.as_str()
            );
        }
        if simulate {
            demo::spawn_simulation(base.clone(), users, store_for_demo.clone());
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    axum::serve(
        listener,
        api::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!("server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
