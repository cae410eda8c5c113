//! Wiring: builds the platform and the domain services once from the configuration, hands
//! each door what it uses, starts the bus subscribers and the doors, and stops them on
//! shutdown. No business rule lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::domains::auth::AuthService;
use crate::domains::contacts::ContactsService;
use crate::domains::mail::MailService;
use crate::domains::mail::authn::InboundAuth;
use crate::domains::mail::dns::Dns;
use crate::domains::mail::outbound::{OutboundQueue, QueueSettings};
use crate::domains::prefs::PrefsService;
use crate::domains::profile::ProfileService;
use crate::domains::stream::StreamService;
use crate::domains::tags::TagService;
use crate::doors::http::{self, HttpState};
use crate::doors::rtmp::{self, RtmpLimits};
use crate::doors::smtp::{self, DoorSettings, MailDoor, SessionKind};
use crate::platform::blobs::Blobs;
use crate::platform::bus::{Bus, Event, Handler};
use crate::platform::config::Config;
use crate::platform::db::{self, Db};
use crate::platform::jobs::{JobPool, PoolSettings};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder cannot be created.
    #[error("cannot create data folder {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The database cannot be opened or migrated.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The blob store cannot be opened.
    #[error("blob store: {0}")]
    Blobs(#[from] crate::platform::blobs::BlobError),
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A domain service could not be built.
    #[error("{0}")]
    Service(String),
}

/// Every domain service plus the platform handles they share.
pub struct Services {
    /// The configuration in effect.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// The blob store.
    pub blobs: Blobs,
    /// The event bus.
    pub bus: Bus,
    /// The worker pool.
    pub jobs: JobPool,
    /// Accounts, sessions and second factors.
    pub auth: AuthService,
    /// Profiles and public cards.
    pub profile: ProfileService,
    /// Preference documents and their attachments.
    pub prefs: PrefsService,
    /// Live streams and recordings.
    pub stream: StreamService,
    /// The mail store and delivery.
    pub mail: MailService,
    /// Labels.
    pub tags: TagService,
    /// Contact books and groups.
    pub contacts: ContactsService,
    /// The DNS resolver of the mail domain (MX look-ups, SPF/DKIM/DMARC via `InboundAuth`).
    pub dns: Dns,
    /// Mail on its way to other servers.
    pub outbound: OutboundQueue,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// Opens the database (migrating it) and the blob store, and builds the services.
pub async fn build(config: Config) -> Result<Arc<Services>, StartError> {
    let data = &config.server.data_dir;
    std::fs::create_dir_all(data).map_err(|e| StartError::DataDir(data.display().to_string(), e))?;
    let db =
        db::open(&config.db_url(), config.db.max_connections, Duration::from_millis(config.db.busy_timeout_ms), true)
            .await?;
    let blobs = Blobs::open(data.join("blobs"), db.clone())?;
    let bus = Bus::new(db.clone());
    let jobs = JobPool::start(PoolSettings {
        workers: config.job_workers(),
        queue: config.jobs.queue,
        timeout: Duration::from_secs(config.jobs.timeout_seconds),
        retries: config.jobs.retries,
        backoff: Duration::from_millis(config.jobs.backoff_ms),
    });
    let auth = AuthService::new(db.clone(), bus.clone(), &config).map_err(|e| StartError::Service(e.to_string()))?;
    let profile = ProfileService::new(db.clone(), blobs.clone(), config.profile.clone());
    let prefs = PrefsService::new(db.clone(), blobs.clone(), bus.clone(), config.prefs.clone());
    let stream = StreamService::new(
        db.clone(),
        blobs.clone(),
        bus.clone(),
        auth.clone(),
        config.stream.clone(),
        config.job_workers(),
        data.clone(),
    );
    let dns = Dns::new(&config.dns).map_err(|e| StartError::Service(e.to_string()))?;
    let authn = InboundAuth::new(dns.clone(), config.smtp.hostname_or(&config.server.domain).to_owned());
    let mail = MailService::new(
        db.clone(),
        blobs.clone(),
        bus.clone(),
        auth.clone(),
        prefs.clone(),
        Some(authn),
        &config.server.domain,
    );
    let tags = TagService::new(db.clone());
    let contacts = ContactsService::new(db.clone());
    let outbound = OutboundQueue::new(
        db.clone(),
        blobs.clone(),
        dns.clone(),
        QueueSettings {
            domain: config.server.domain.clone(),
            data_dir: data.clone(),
            selector: config.dkim.selector.clone(),
            config: config.outbound.clone(),
        },
        Arc::new(mail.clone()),
    )
    .map_err(|e| StartError::Service(e.to_string()))?;
    mail.set_outbound(outbound.clone());
    Ok(Arc::new(Services {
        config: Arc::new(config),
        db,
        blobs,
        bus,
        jobs,
        auth,
        profile,
        prefs,
        stream,
        mail,
        tags,
        contacts,
        dns,
        outbound,
        metrics: crate::platform::metrics::install(),
    }))
}

/// A bus handler that clones `service` for each event and calls `handle` on it.
fn handler<S, F, Fut>(service: S, handle: F) -> Handler
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move |e| Box::pin(handle(service.clone(), e)))
}

/// Starts one bus subscriber per consuming domain.
fn start_subscribers(services: &Arc<Services>, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let bus = &services.bus;
    vec![
        bus.subscribe(
            "profile",
            handler(services.profile.clone(), |p, e| async move { p.handle_event(e).await }),
            stop.clone(),
        ),
        bus.subscribe(
            "prefs",
            handler(services.prefs.clone(), |p, e| async move { p.handle_event(e).await }),
            stop.clone(),
        ),
        bus.subscribe(
            "contacts",
            handler(services.contacts.clone(), |c, e| async move { c.handle_event(e).await }),
            stop.clone(),
        ),
    ]
}

/// Hourly upkeep: stream retention and pruning of delivered outbox events.
fn start_housekeeping(services: Arc<Services>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match services.stream.apply_retention(db::now()).await {
                Ok((chunks, recordings)) if chunks + recordings > 0 => {
                    tracing::info!(chunks, recordings, "retention removed old stream data")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "stream retention failed"),
            }
            if let Err(e) = services.bus.prune().await {
                tracing::warn!(error = %e, "outbox pruning failed");
            }
        }
    })
}

/// Binds the HTTP listener, prints where postcast serves, and serves until `shutdown`
/// resolves; then stops the doors and the bus subscribers gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    let started = std::time::Instant::now();
    let http_addr = config.server.http;
    let rtmp_addr = config.server.rtmp;
    let listener = TcpListener::bind(http_addr).await.map_err(|e| StartError::Bind(http_addr, e))?;
    let rtmp_listener = TcpListener::bind(rtmp_addr).await.map_err(|e| StartError::Bind(rtmp_addr, e))?;
    let mut smtp_listeners = Vec::new();
    for (addr, kind, implicit_tls) in [
        (config.server.smtp, SessionKind::Inbound, false),
        (config.server.submission, SessionKind::Submission, false),
        (config.server.submissions, SessionKind::Submission, true),
    ] {
        let listener = TcpListener::bind(addr).await.map_err(|e| StartError::Bind(addr, e))?;
        let local = listener.local_addr().map_err(|e| StartError::Bind(addr, e))?;
        smtp_listeners.push((listener, local, DoorSettings::from_config(&config, kind, implicit_tls)));
    }
    let tls = crate::platform::tls::server_config(&config).map_err(|e| StartError::Service(format!("TLS: {e}")))?;
    let services = build(config).await?;
    let local = listener.local_addr().map_err(|e| StartError::Bind(http_addr, e))?;
    let rtmp_local = rtmp_listener.local_addr().map_err(|e| StartError::Bind(rtmp_addr, e))?;
    services.stream.set_ingest_addr(rtmp_local);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers = start_subscribers(&services, &stop_rx);
    match services.stream.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(streams = n, "streams left live by the last run are now recordings"),
        Err(e) => tracing::warn!(error = %e, "stream recovery failed"),
    }
    subscribers.push(start_housekeeping(services.clone(), stop_rx.clone()));
    if let Err(e) = services.outbound.dkim_key().await {
        tracing::warn!(error = %e, "no DKIM key: outgoing mail cannot be queued");
    }
    subscribers.push(services.outbound.start(stop_rx.clone()));
    let limits = RtmpLimits {
        handshake_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
        max_message_bytes: services.config.stream.max_message_bytes,
        max_connections: 256,
    };
    subscribers.push(tokio::spawn(rtmp::serve(rtmp_listener, services.stream.clone(), limits, stop_rx.clone())));
    let mail_door = Arc::new(MailDoor::new(services.auth.clone(), services.mail.clone()));
    let mut smtp_lines = Vec::new();
    for (listener, local, door) in smtp_listeners {
        smtp_lines.push(match (door.session.kind, door.implicit_tls) {
            (SessionKind::Inbound, _) => format!("SMTP listening on smtp://{local}"),
            (SessionKind::Submission, false) => format!("Submission listening on smtp://{local}"),
            (SessionKind::Submission, true) => format!("Submissions listening on smtps://{local}"),
        });
        let serve = smtp::serve(listener, door, Some(tls.clone()), mail_door.clone(), stop_rx.clone());
        subscribers.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "SMTP door stopped");
            }
        }));
    }
    let app = http::router(HttpState { services: services.clone() });
    let c = &services.config;
    println!("postcast {} serving", env!("CARGO_PKG_VERSION"));
    println!("  data folder   {}", c.server.data_dir.display());
    println!("  mail domain   {}", c.server.domain);
    println!("  web UI        http://{local}/");
    println!("  API           http://{local}/api/v1  (OpenAPI: http://{local}/api/v1/openapi.json)");
    println!("  health        http://{local}/healthz   metrics: http://{local}/metrics");
    println!("  RTMP ingest   rtmp://{rtmp_local}/live/STREAM-KEY  (OBS: Settings → Stream → Custom)");
    if let Err(e) = services.stream.ffmpeg_status() {
        println!("  streaming     DISABLED: {e}");
    }
    for line in &smtp_lines {
        let (what, url) = line.split_once(" listening on ").unwrap_or((line, ""));
        let role = match what {
            "SMTP" => "SMTP (MX)",
            "Submission" => "submission",
            _ => "submissions",
        };
        let hint = match what {
            "SMTP" => "mail from other servers; port 25 in production",
            "Submission" => "mail programs: STARTTLS, then AUTH with an app password",
            _ => "mail programs over implicit TLS; port 465 in production",
        };
        println!("  {role:<13} {url}  ({hint})");
    }
    for line in &smtp_lines {
        println!("{line}");
    }
    println!("RTMP listening on rtmp://{rtmp_local}");
    println!("HTTP listening on http://{local}");
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    for s in subscribers {
        let _ = s.await;
    }
    services.db.clone().close().await.ok();
    served.map_err(|e| StartError::Bind(local, e))
}
