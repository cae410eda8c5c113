//! The `postcast` command line: `serve` (the default), `migrate`, `user` account
//! commands, `bans` (networks banned for failed logins), `dns` (the records to publish),
//! `queue` (the outbound queue) and mail `import`/`export`. Flags and `POSTCAST_*` variables override the config file.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use postcast::app;
use postcast::config::Config;
use postcast::domains::auth::ClientInfo;

/// One binary for self-hosted mail and live streaming.
#[derive(Parser, Debug)]
#[command(name = "postcast", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML); see config.toml for every key.
    #[arg(long, global = true, env = "POSTCAST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder for the database and blobs [default: ./data].
    #[arg(long, global = true, env = "POSTCAST_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "POSTCAST_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Inbound SMTP listen address [default: 127.0.0.1:2525].
    #[arg(long, global = true, env = "POSTCAST_SMTP", value_name = "ADDR")]
    smtp: Option<SocketAddr>,
    /// SMTP submission listen address [default: 127.0.0.1:2587].
    #[arg(long, global = true, env = "POSTCAST_SUBMISSION", value_name = "ADDR")]
    submission: Option<SocketAddr>,
    /// SMTP submission over implicit TLS listen address [default: 127.0.0.1:2465].
    #[arg(long, global = true, env = "POSTCAST_SUBMISSIONS", value_name = "ADDR")]
    submissions: Option<SocketAddr>,
    /// IMAP (STARTTLS) listen address [default: 127.0.0.1:1143].
    #[arg(long, global = true, env = "POSTCAST_IMAP", value_name = "ADDR")]
    imap: Option<SocketAddr>,
    /// IMAP over implicit TLS listen address [default: 127.0.0.1:1993].
    #[arg(long, global = true, env = "POSTCAST_IMAPS", value_name = "ADDR")]
    imaps: Option<SocketAddr>,
    /// RTMP listen address [default: 127.0.0.1:1935].
    #[arg(long, global = true, env = "POSTCAST_RTMP", value_name = "ADDR")]
    rtmp: Option<SocketAddr>,
    /// Mail domain [default: localhost].
    #[arg(long, global = true, env = "POSTCAST_DOMAIN", value_name = "DOMAIN")]
    domain: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Once every door listens, write where (JSON: http, rtmp, smtp, submission,
        /// submissions, imap, imaps as `IP:PORT`) to this file, for scripts and tests.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// List or lift the bans of networks that failed too many logins across accounts. A
    /// running server sees a lifted ban at the next login attempt.
    Bans {
        #[command(subcommand)]
        action: BansAction,
    },
    /// Print the DNS records to publish for the mail domain (MX, SPF, DKIM, DMARC); makes
    /// the DKIM key if there is none yet.
    Dns,
    /// Inspect and steer the outbound queue (mail waiting for other servers).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Inspect and replay the bus events a subscriber gave up on (dead letters).
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Import mail into an account (messages it already has are skipped).
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Export an account's mail.
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
}

#[derive(Subcommand, Debug)]
enum ImportSource {
    /// Import an mbox file (mboxrd or mboxo, e.g. Google Takeout or Thunderbird).
    Mbox {
        /// The mbox file.
        file: PathBuf,
        /// The account to import into.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The mailbox to put the messages in, created when missing [default: INBOX].
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
    },
    /// Import a Maildir; its Maildir++ subfolders (.Sent, .Work.Projects) become mailboxes.
    Maildir {
        /// The Maildir folder (with cur/ and new/).
        dir: PathBuf,
        /// The account to import into.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The mailbox for the top folder (subfolders go under it), created when missing
        /// [default: INBOX, subfolders at the top level].
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ExportFormat {
    /// Write an mboxrd file.
    Mbox {
        /// The account to export.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Only this mailbox [default: all of them].
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
        /// The file to write [default: standard output].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum EventsAction {
    /// List the events subscribers gave up on, with the last error.
    Failed,
    /// Hand dead letters to their subscriber again; those that succeed are removed.
    Retry {
        /// The dead letter's id (from `events failed`); every one when left out.
        id: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum QueueAction {
    /// List queued and recently finished messages with each recipient's state.
    List,
    /// Try a queued message again now (a running server picks it up within 30 s).
    Retry {
        /// The queue id (from `queue list`).
        id: i64,
    },
    /// Remove a message from the queue without bouncing it.
    Drop {
        /// The queue id (from `queue list`).
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
enum BansAction {
    /// List the networks banned now, with when the ban ends.
    List,
    /// End the ban of a network at once.
    Lift {
        /// The network as listed: an IPv4 address, or an IPv6 /64 (any address in it will do).
        network: String,
    },
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Create an account; the password is read from standard input. The first account of
    /// the server is its administrator.
    Add {
        /// Login name (the address is NAME@DOMAIN).
        name: String,
    },
    /// Make a single-use invitation to register (valid for 7 days) and print its link.
    Invite {
        /// Where people open the web UI [default: http:// and the HTTP listen address].
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
    /// List accounts.
    List,
    /// Disable an account and end its sessions.
    Disable {
        /// Login name.
        name: String,
    },
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let s = &mut c.server;
        if let Some(v) = &self.data_dir {
            s.data_dir = v.clone();
        }
        if let Some(v) = self.http {
            s.http = v;
        }
        if let Some(v) = self.smtp {
            s.smtp = v;
        }
        if let Some(v) = self.submission {
            s.submission = v;
        }
        if let Some(v) = self.submissions {
            s.submissions = v;
        }
        if let Some(v) = self.imap {
            s.imap = v;
        }
        if let Some(v) = self.imaps {
            s.imaps = v;
        }
        if let Some(v) = self.rtmp {
            s.rtmp = v;
        }
        if let Some(v) = &self.domain {
            s.domain = v.clone();
        }
        c.check()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Everything postcast writes (database, blobs, keys, spool) is for this user alone:
    // new files 0600, new folders 0700.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    // Both rustls back-ends are linked (ring and aws-lc-rs); pick one before any TLS use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts every door, tells where (the ready file first, then the banner), and serves
/// until Ctrl-C or SIGTERM.
async fn serve(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let running = app::start(config).await?;
    if let Some(path) = ready_file {
        let json = serde_json::to_vec(&running.bound)?;
        // Written whole, then renamed, so a reader never sees half of it.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, json).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", running.banner());
    running.serve(shutdown_signal()).await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    match cli.command.unwrap_or(Command::Serve { ready_file: None }) {
        Command::Serve { ready_file } => serve(config, ready_file).await?,
        Command::Migrate => {
            std::fs::create_dir_all(&config.server.data_dir)
                .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
            let db =
                postcast::platform::db::open(&config.db_url(), 1, std::time::Duration::from_secs(5), false).await?;
            let n = postcast::platform::db::migrate(&db).await?;
            println!("applied {n} migration(s); the database is up to date");
        }
        Command::User { action } => user_command(config, action).await?,
        Command::Bans { action } => bans_command(config, action).await?,
        Command::Dns => dns_command(&config)?,
        Command::Queue { action } => queue_command(config, action).await?,
        Command::Events { action } => events_command(config, action).await?,
        Command::Import { source } => import_command(config, source).await?,
        Command::Export { format } => export_command(config, format).await?,
    }
    Ok(())
}

fn dns_command(config: &Config) -> anyhow::Result<()> {
    use postcast::domains::mail::outbound::dkim::{DkimKey, dns_records, key_path};
    let domain = &config.server.domain;
    let selector = &config.dkim.selector;
    let key = DkimKey::load_or_create(&config.server.data_dir, domain, selector)?;
    let mx_host = if config.outbound.helo_name.is_empty() { domain } else { &config.outbound.helo_name };
    print!("{}", dns_records(domain, mx_host, &key));
    println!();
    println!("; The MX host {mx_host} needs an A (and AAAA) record pointing at this server,");
    println!(
        "; and the server's address a PTR record naming it. DKIM key: {}",
        key_path(&config.server.data_dir, selector).display()
    );
    Ok(())
}

async fn events_command(config: Config, action: EventsAction) -> anyhow::Result<()> {
    let services = app::build(config).await?;
    match action {
        EventsAction::Failed => {
            let letters = services.bus.dead_letters().await?;
            if letters.is_empty() {
                println!("no failed events");
            }
            for l in letters {
                println!("#{:<6} {:<10} outbox {:<8} {}", l.id, l.subscriber, l.outbox_id, l.error);
                println!("        {}", l.event);
            }
        }
        EventsAction::Retry { id } => {
            let handlers = app::subscribers(&services);
            let (done, failed) = services.bus.retry_dead_letters(id, &handlers).await?;
            println!("{done} delivered, {failed} failed again");
            if failed > 0 {
                anyhow::bail!("{failed} event(s) failed again; see `postcast events failed`");
            }
        }
    }
    Ok(())
}

async fn queue_command(config: Config, action: QueueAction) -> anyhow::Result<()> {
    let services = app::build(config).await?;
    let queue = &services.outbound;
    match action {
        QueueAction::List => {
            let messages = queue.list(None).await?;
            if messages.is_empty() {
                println!("the outbound queue is empty");
            }
            let now = postcast::platform::db::now();
            for m in messages {
                let owner = m.owner.map(|u| format!("user {u}")).unwrap_or_else(|| "server".into());
                let when = if m.status == postcast::domains::mail::outbound::MessageStatus::Queued {
                    format!("next try in {} s", (m.next_attempt_at - now).max(0))
                } else {
                    String::new()
                };
                println!(
                    "#{:<6} {:<7} {:<10} attempts {:<3} {:<40} {}",
                    m.id,
                    m.status,
                    owner,
                    m.attempts,
                    format!("<{}>", m.envelope_from),
                    when
                );
                for r in m.recipients {
                    println!("        {:<9} {:<40} {}", r.status, r.address, r.reply.unwrap_or_default());
                }
            }
        }
        QueueAction::Retry { id } => {
            queue.retry_now(None, id).await?;
            println!("#{id} will be tried again now");
        }
        QueueAction::Drop { id } => {
            queue.cancel(None, id).await?;
            println!("#{id} removed from the queue");
        }
    }
    Ok(())
}

async fn user_command(config: Config, action: UserAction) -> anyhow::Result<()> {
    let http = config.server.http;
    let services = app::build(config).await?;
    let auth = &services.auth;
    match action {
        UserAction::Add { name } => {
            let password = read_password()?;
            let u = auth.create_user(&name, &password, &ClientInfo::local("cli")).await?;
            let role = if u.is_admin { " (the administrator)" } else { "" };
            println!("created {} <{}>{role}", u.username, u.address);
        }
        UserAction::Invite { base_url } => {
            let made = auth.create_invitation_locally().await?;
            let base = base_url.unwrap_or_else(|| format!("http://{http}"));
            println!("{}/register?invitation={}", base.trim_end_matches('/'), made.token);
            let days = postcast::domains::auth::INVITATION_LIFE / 86_400;
            eprintln!("single use, valid for {days} days; it is shown only now");
        }
        UserAction::List => {
            let users = auth.list_users().await?;
            if users.is_empty() {
                println!("no users yet; add one with: postcast user add NAME");
            }
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                let factor = if u.has_second_factor() { "2fa" } else { "password" };
                let role = if u.is_admin { " admin" } else { "" };
                println!("{:<24} {:<40} {:<8} {}{role}", u.username, u.address, state, factor);
            }
        }
        UserAction::Disable { name } => {
            let u = auth.disable_user(&name).await?;
            println!("disabled {}; its sessions are ended", u.username);
        }
    }
    Ok(())
}

async fn bans_command(config: Config, action: BansAction) -> anyhow::Result<()> {
    let services = app::build(config).await?;
    let auth = &services.auth;
    match action {
        BansAction::List => {
            let bans = auth.bans().await?;
            if bans.is_empty() {
                println!("no network is banned");
            }
            let now = postcast::platform::db::now();
            for b in bans {
                println!(
                    "{:<24} banned after {:<4} failed logins, {} s left",
                    b.network,
                    b.failures,
                    (b.until - now).max(0)
                );
            }
        }
        BansAction::Lift { network } => {
            let network = auth.lift_ban(&network).await?;
            println!("the ban of {network} is lifted");
        }
    }
    Ok(())
}

async fn import_command(config: Config, source: ImportSource) -> anyhow::Result<()> {
    let services = app::build(config).await?;
    let (ImportSource::Mbox { user, .. } | ImportSource::Maildir { user, .. }) = &source;
    let user_id = user_id(&services, user).await?;
    let bar = progress_bar(matches!(source, ImportSource::Mbox { .. }));
    let progress = {
        let bar = bar.clone();
        move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    let mail = &services.mail;
    let report = match &source {
        ImportSource::Mbox { file, mailbox, .. } => {
            mail.import_mbox(user_id, file, mailbox.as_deref(), &progress).await
        }
        ImportSource::Maildir { dir, mailbox, .. } => {
            mail.import_maildir(user_id, dir, mailbox.as_deref(), &progress).await
        }
    };
    bar.finish_and_clear();
    let report = report?;
    for why in &report.errors {
        eprintln!("failed: {why}");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("imported {}, skipped {} (duplicates), failed {}", report.imported, report.skipped, report.failed);
    println!("took {seconds:.1} s ({:.0} messages/s)", report.imported as f64 / seconds.max(0.001));
    services.db.clone().close().await.ok();
    if report.failed > 0 {
        bail!("{} message(s) could not be imported", report.failed);
    }
    Ok(())
}

async fn export_command(config: Config, format: ExportFormat) -> anyhow::Result<()> {
    let services = app::build(config).await?;
    let ExportFormat::Mbox { user, mailbox, out } = format;
    let user_id = user_id(&services, &user).await?;
    let mail = &services.mail;
    match &out {
        Some(path) => {
            let file = tokio::fs::File::create(path).await.with_context(|| format!("creating {}", path.display()))?;
            let count = mail.export_mbox(user_id, mailbox.as_deref(), file).await?;
            eprintln!("exported {count} message(s) to {}", path.display());
        }
        None => {
            let count = mail.export_mbox(user_id, mailbox.as_deref(), tokio::io::stdout()).await?;
            eprintln!("exported {count} message(s)");
        }
    }
    services.db.clone().close().await.ok();
    Ok(())
}

/// The id of the account called `name`.
async fn user_id(services: &app::Services, name: &str) -> anyhow::Result<i64> {
    match services.auth.find_by_username(name).await? {
        Some(u) => Ok(u.id),
        None => bail!("no user named {name:?}; list them with: postcast user list"),
    }
}

/// A progress bar on standard error, hidden when standard output is not a terminal.
fn progress_bar(bytes: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let target =
        if std::io::stdout().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{bar:40} {pos}/{len} messages {per_sec} eta {eta}"
    };
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(0), target).with_style(style)
}

fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("no password given on standard input");
    }
    Ok(password)
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
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
