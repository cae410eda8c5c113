//! Wiring: builds the platform and the domain services once from the configuration, hands
//! each door what it uses, starts the bus subscribers and the doors, and stops them on
//! shutdown. No business rule lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::domains::auth::AuthService;
use crate::domains::contacts::ContactsService;
use crate::domains::mail::MailService;
use crate::domains::mail::authn::InboundAuth;
use crate::domains::mail::dns::Dns;
use crate::domains::mail::outbound::{OutboundQueue, QueueSettings};
use crate::domains::mail::scan::Scanners;
use crate::domains::mail::send::Limits;
use crate::domains::prefs::PrefsService;
use crate::domains::profile::ProfileService;
use crate::domains::stream::StreamService;
use crate::doors::http::{self, HttpSettings, HttpState, Probe};
use crate::doors::imap;
use crate::doors::rtmp::{self, RtmpLimits};
use crate::doors::smtp::{self, DoorSettings, MailDoor, SessionKind};
use crate::events::{Bus, Event, Handler};
use crate::platform::blobs::Blobs;
use crate::platform::db::{self, Db};
use crate::platform::jobs::{JobPool, PoolSettings};
use crate::platform::quota::Quota;
use crate::platform::secrets::ServerSecret;

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
    /// The account service could not be built (e.g. bad Argon2 parameters).
    #[error("accounts: {0}")]
    Auth(#[from] crate::domains::auth::AuthError),
    /// The DNS resolver could not be set up.
    #[error("DNS: {0}")]
    Dns(#[from] crate::domains::mail::dns::DnsSetupError),
    /// The outbound queue could not be set up (e.g. its DKIM key).
    #[error("outbound queue: {0}")]
    Outbound(#[from] crate::domains::mail::outbound::QueueError),
    /// The doors' TLS certificate could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] crate::platform::tls::TlsError),
    /// The server's secret could not be read or made.
    #[error("server secret: {0}")]
    Secret(#[from] crate::platform::secrets::SecretError),
}

/// Every domain service plus the platform handles they share.
pub struct Services {
    /// The configuration in effect.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// The event bus.
    pub bus: Bus,
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
    /// Contact books and groups.
    pub contacts: ContactsService,
    /// Mail on its way to other servers.
    pub outbound: OutboundQueue,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// Creates the data folder, or tightens an existing one, so that only this user can enter
/// it (0700) and its top-level files (the database and its WAL) are 0600. Files made later
/// inherit the process's umask (0077, set by the binary).
fn private_data_dir(data: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(data)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Opens the database (migrating it) and the blob store, and builds the services.
pub async fn build(config: Config) -> Result<Arc<Services>, StartError> {
    let data = &config.server.data_dir;
    private_data_dir(data).map_err(|e| StartError::DataDir(data.display().to_string(), e))?;
    let db =
        db::open(&config.db_url(), config.db.max_connections, Duration::from_millis(config.db.busy_timeout_ms), true)
            .await?;
    let blobs = Blobs::open(data.join("blobs"), db.clone())?;
    let bus = Bus::new(db.clone());
    let jobs = JobPool::start(PoolSettings::from_config(&config.jobs));
    let secret = ServerSecret::load_or_create(data)?;
    let auth = AuthService::new(db.clone(), bus.clone(), &config, &secret)?;
    let sealed = auth.seal_stored_secrets().await?;
    if sealed > 0 {
        tracing::info!(rows = sealed, "sealed second-factor secrets stored before sealing");
    }
    let profile = ProfileService::new(db.clone(), blobs.clone(), config.profile.clone());
    let prefs = PrefsService::new(db.clone(), blobs.clone(), bus.clone(), config.prefs.clone());
    let stream = StreamService::new(
        db.clone(),
        blobs.clone(),
        bus.clone(),
        auth.clone(),
        config.stream.clone(),
        jobs.clone(),
        data.clone(),
    );
    let dns = Dns::new(&config.dns)?;
    let authn = InboundAuth::new(dns.clone(), config.smtp.hostname_or(&config.server.domain).to_owned());
    let mail = MailService::new(
        db.clone(),
        blobs.clone(),
        bus.clone(),
        auth.clone(),
        prefs.clone(),
        Scanners::default(),
        Some(authn),
        &config.server.domain,
    );
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
    )?;
    mail.set_outbound(outbound.clone());
    mail.set_inbound_policy(config.inbound.clone());
    let quota = Quota::new(&config.quota);
    quota.add_source(Arc::new(mail.clone()));
    quota.add_source(Arc::new(stream.clone()));
    mail.set_limits(Limits { sending: config.sending.clone(), quota: quota.clone() });
    stream.set_quota(quota);
    Ok(Arc::new(Services {
        config: Arc::new(config),
        db,
        bus,
        auth,
        profile,
        prefs,
        stream,
        mail,
        contacts,
        outbound,
        metrics: crate::platform::metrics::install(),
    }))
}

/// A bus handler that clones `service` for each event and calls `handle` on it.
fn handler<S, F, Fut, Err>(service: S, handle: F) -> Handler
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Err>> + Send + 'static,
    Err: std::error::Error + Send + Sync + 'static,
{
    Arc::new(move |e| {
        let fut = handle(service.clone(), e);
        Box::pin(async move { fut.await.map_err(|e| e.into()) })
    })
}

/// Every bus subscriber by name, with its handler: one per consuming domain.
pub fn subscribers(services: &Services) -> Vec<(&'static str, Handler)> {
    vec![
        ("profile", handler(services.profile.clone(), |p, e| async move { p.handle_event(e).await })),
        ("prefs", handler(services.prefs.clone(), |p, e| async move { p.handle_event(e).await })),
        ("contacts", handler(services.contacts.clone(), |c, e| async move { c.handle_event(e).await })),
        ("stream", handler(services.stream.clone(), |s, e| async move { s.handle_event(e).await })),
    ]
}

/// Starts one bus subscriber task per [`subscribers`] entry.
fn start_subscribers(services: &Arc<Services>, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    subscribers(services).into_iter().map(|(name, h)| services.bus.subscribe(name, h, stop.clone())).collect()
}

/// Hourly upkeep: stream retention, unsent uploads and pruning of delivered outbox events.
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
            match services.mail.collect_uploads(db::now()).await {
                Ok(n) if n > 0 => tracing::info!(uploads = n, "unsent uploads older than a day removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "collecting unsent uploads failed"),
            }
            if let Err(e) = services.bus.prune().await {
                tracing::warn!(error = %e, "outbox pruning failed");
            }
        }
    })
}

/// Where each door listens, as bound: the real ports when the configuration said 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    /// The web UI, the API, HLS, `/healthz` and `/metrics`.
    pub http: SocketAddr,
    /// RTMP ingest.
    pub rtmp: SocketAddr,
    /// Inbound SMTP (MX).
    pub smtp: SocketAddr,
    /// SMTP submission with STARTTLS.
    pub submission: SocketAddr,
    /// SMTP submission over implicit TLS.
    pub submissions: SocketAddr,
    /// IMAP with STARTTLS.
    pub imap: SocketAddr,
    /// IMAP over implicit TLS.
    pub imaps: SocketAddr,
}

/// A started server: every door listens; [`Running::serve`] runs it until shutdown.
pub struct Running {
    /// Where the doors listen.
    pub bound: Bound,
    services: Arc<Services>,
    http: TcpListener,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: std::time::Instant,
}

/// Binds a listener, reporting the address it was asked for on failure.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| StartError::Bind(addr, e))?;
    let local = listener.local_addr().map_err(|e| StartError::Bind(addr, e))?;
    Ok((listener, local))
}

/// Binds every door, builds the services, and starts the bus subscribers, the background
/// workers and the TCP doors. The HTTP door starts with [`Running::serve`].
pub async fn start(config: Config) -> Result<Running, StartError> {
    let started = std::time::Instant::now();
    let (http, http_addr) = bind(config.server.http).await?;
    let (rtmp_listener, rtmp_addr) = bind(config.server.rtmp).await?;
    let mut smtp_listeners = Vec::new();
    // One memory budget for the bodies of all SMTP doors (`smtp.max_bytes_in_flight`).
    let smtp_budget = smtp::MemoryBudget::new(config.smtp.max_bytes_in_flight);
    for (addr, kind, implicit_tls) in [
        (config.server.smtp, SessionKind::Inbound, false),
        (config.server.submission, SessionKind::Submission, false),
        (config.server.submissions, SessionKind::Submission, true),
    ] {
        let (listener, local) = bind(addr).await?;
        smtp_listeners.push((listener, local, DoorSettings::from_config(&config, kind, implicit_tls, &smtp_budget)));
    }
    let mut imap_listeners = Vec::new();
    for (addr, implicit_tls) in [(config.server.imap, false), (config.server.imaps, true)] {
        let (listener, local) = bind(addr).await?;
        imap_listeners.push((listener, local, imap::DoorSettings::from_config(&config.imap, implicit_tls)));
    }
    let bound = Bound {
        http: http_addr,
        rtmp: rtmp_addr,
        smtp: smtp_listeners[0].1,
        submission: smtp_listeners[1].1,
        submissions: smtp_listeners[2].1,
        imap: imap_listeners[0].1,
        imaps: imap_listeners[1].1,
    };
    let tls = config.server_tls()?;
    let spool = smtp::spool_dir(&config);
    let services = build(config).await?;
    smtp::spool::prepare(&spool).map_err(|e| StartError::DataDir(spool.display().to_string(), e))?;
    services.stream.set_ingest_addr(rtmp_addr);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = start_subscribers(&services, &stop_rx);
    match services.stream.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(streams = n, "streams left live by the last run are now recordings"),
        Err(e) => tracing::warn!(error = %e, "stream recovery failed"),
    }
    tasks.push(start_housekeeping(services.clone(), stop_rx.clone()));
    if let Err(e) = services.outbound.dkim_key().await {
        tracing::warn!(error = %e, "no DKIM key: outgoing mail cannot be queued");
    }
    tasks.push(services.outbound.start(stop_rx.clone()));
    let ingest = &services.config.stream;
    let limits = RtmpLimits {
        handshake_timeout: Duration::from_secs(ingest.rtmp_handshake_seconds),
        read_timeout: Duration::from_secs(ingest.rtmp_read_timeout_seconds),
        publish_timeout: Duration::from_secs(ingest.rtmp_publish_seconds),
        max_message_bytes: ingest.max_message_bytes,
        max_connections: ingest.rtmp_max_connections,
        connections_per_ip: ingest.rtmp_connections_per_ip,
    };
    tasks.push(tokio::spawn(rtmp::serve(rtmp_listener, services.stream.clone(), limits, stop_rx.clone())));
    let mail_door = Arc::new(MailDoor::new(services.auth.clone(), services.mail.clone()));
    for (listener, _, door) in smtp_listeners {
        let serve = smtp::serve(listener, door, Some(tls.clone()), mail_door.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "SMTP door stopped");
            }
        }));
    }
    for (listener, _, door) in imap_listeners {
        let (auth, mail) = (services.auth.clone(), services.mail.clone());
        let serve = imap::serve(listener, door, Some(tls.clone()), auth, mail, stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "IMAP door stopped");
            }
        }));
    }
    Ok(Running { bound, services, http, stop_tx, tasks, started })
}

/// `/healthz`'s question to the database.
struct DbProbe(Db);

impl Probe for DbProbe {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move { Ok(db::ping(&self.0).await?) })
    }
}

/// The HTTP door's state: the services it calls and its settings, nothing more.
pub fn http_state(services: &Services) -> HttpState {
    HttpState {
        auth: services.auth.clone(),
        profile: services.profile.clone(),
        prefs: services.prefs.clone(),
        stream: services.stream.clone(),
        mail: services.mail.clone(),
        contacts: services.contacts.clone(),
        outbound: services.outbound.clone(),
        metrics: services.metrics.clone(),
        probes: Arc::new([Arc::new(DbProbe(services.db.clone())) as Arc<dyn Probe>]),
        settings: Arc::new(HttpSettings::from_config(&services.config)),
    }
}

impl Running {
    /// What a person starting the server reads: where each door is and what it is for.
    pub fn banner(&self) -> String {
        let c = &self.services.config;
        let b = &self.bound;
        let h = b.http;
        let mut out = format!("postcast {} serving\n", env!("CARGO_PKG_VERSION"));
        let mut line = |label: &str, text: String| out.push_str(&format!("  {label:<13} {text}\n"));
        line("data folder", c.server.data_dir.display().to_string());
        line("mail domain", c.server.domain.clone());
        line("web UI", format!("http://{h}/"));
        line("API", format!("http://{h}/api/v1  (OpenAPI: http://{h}/api/v1/openapi.json)"));
        line("health", format!("http://{h}/healthz   metrics: http://{h}/metrics"));
        line("RTMP ingest", format!("rtmp://{}/live/STREAM-KEY  (OBS: Settings → Stream → Custom)", b.rtmp));
        if let Err(e) = self.services.stream.ffmpeg_status() {
            line("streaming", format!("DISABLED: {e}"));
        }
        line("SMTP (MX)", format!("smtp://{}  (mail from other servers; port 25 in production)", b.smtp));
        line(
            "submission",
            format!("smtp://{}  (mail programs: STARTTLS, then AUTH with an app password)", b.submission),
        );
        line(
            "submissions",
            format!("smtps://{}  (mail programs over implicit TLS; port 465 in production)", b.submissions),
        );
        line("IMAP", format!("imap://{}  (mail programs: STARTTLS, then LOGIN with an app password)", b.imap));
        line("IMAPS", format!("imaps://{}  (mail programs over implicit TLS; port 993 in production)", b.imaps));
        if c.sms.provider == "log" {
            let offered = if self.services.auth.sms_available() {
                "loopback and test set-ups only"
            } else {
                "so SMS is not offered as a second factor here"
            };
            line("SMS codes", format!("written to this server's log (sms.provider = \"log\"): {offered}"));
        }
        out.push_str(&format!("Ready in {} ms.\n", self.started.elapsed().as_millis()));
        out
    }

    /// Serves HTTP until `shutdown` resolves; then stops the doors, the workers and the bus
    /// subscribers gracefully and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let Running { bound, services, http, stop_tx, tasks, started } = self;
        let app = http::router(http_state(&services));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
        let served = axum::serve(http, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        services.db.clone().close().await.ok();
        served.map_err(|e| StartError::Bind(bound.http, e))
    }
}
