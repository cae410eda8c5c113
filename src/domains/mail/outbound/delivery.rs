//! One delivery attempt of one message to one route (a recipient domain's MX hosts, a fixed
//! override target, or the smarthost) over SMTP with mail-send: find the targets (MX by
//! preference, else the domain's own address, RFC 5321 §5.1), then per target connect,
//! EHLO, STARTTLS when offered (RFC 3207), MAIL, one RCPT per recipient and DATA, and
//! sort every recipient's answer into delivered / failed / deferred. It touches no table:
//! the worker records what it returns. MX hosts with loopback, private or other non-public
//! addresses are dropped unless `outbound.allow_private_targets` (see `targets.rs`).
//!
//! TLS: to MX hosts and override targets it is opportunistic and unverified, like every
//! MTA's (RFC 7435; a failed handshake is retried in plain text on a new connection); to
//! the smarthost certificates are verified and credentials are only ever sent over TLS
//! (or to a loopback smarthost).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_send::{Credentials, SmtpClient};
use rustls::ClientConfig;
use smtp_proto::{EXT_8BIT_MIME, EXT_START_TLS, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::OutboundConfig;
use super::targets::{SpecialRange, special_range};
use crate::domains::mail::dns::{Dns, LookupError};

/// The most recipients sent in one transaction (RFC 5321 §4.5.3.1.8 guarantees 100).
const RCPTS_PER_TRANSACTION: usize = 100;

/// Where a group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Route {
    /// The configured smarthost takes everything.
    Relay,
    /// `outbound.mx_override` names a fixed `host:port` for this domain.
    Override(String),
    /// The domain's MX hosts.
    Mx(String),
}

/// What became of one recipient in this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A server took responsibility (2xx after DATA).
    Delivered {
        /// The final reply.
        reply: String,
        /// Who answered.
        remote: String,
    },
    /// Refused for good (5xx, or a domain that does not exist).
    Failed {
        /// The reply or reason.
        reply: String,
        /// Who answered, if a server did.
        remote: Option<String>,
    },
    /// Not now (4xx, connection or DNS trouble): try again later.
    Deferred {
        /// The reply or reason.
        reply: String,
        /// Who answered, if a server did.
        remote: Option<String>,
    },
}

/// The message as mail-send's `write_message` wants it: that writes `CRLF . CRLF` after
/// the data whatever it ends with, so a final CRLF of the message must be left to it, or
/// the receiver gets an empty line more than was queued (RFC 5321 §4.1.1.4: the CRLF
/// before the dot ends the last line of the message).
fn without_final_crlf(message: &[u8]) -> &[u8] {
    message.strip_suffix(b"\r\n").unwrap_or(message)
}

/// The TLS policy of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// STARTTLS when offered, certificates not checked.
    Opportunistic,
    /// No TLS (the retry after a failed opportunistic handshake).
    Off,
    /// The smarthost: STARTTLS when offered, verified.
    RelayStartTls,
    /// The smarthost: TLS from the first byte, verified.
    RelayImplicit,
}

/// Everything one attempt needs; built once by the queue.
pub(super) struct Deliverer {
    pub(super) dns: Dns,
    pub(super) config: OutboundConfig,
    /// The EHLO name.
    pub(super) helo: String,
    opportunistic: TlsConnector,
    verified: Option<TlsConnector>,
}

/// Why a connection to one target did not complete a transaction.
enum HostError {
    /// Try the next target, then defer.
    Temporary(String),
    /// The server refused the whole transaction for good.
    Permanent(String),
    /// The TLS handshake failed after STARTTLS: retry this target in plain text.
    TlsFailed(String),
}

/// A reply as one line: `550 5.1.1 text`.
fn reply_text(r: &Response<String>) -> String {
    let text: String = r.message.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    if r.esc[0] > 0 {
        format!("{} {}.{}.{} {}", r.code, r.esc[0], r.esc[1], r.esc[2], text.trim())
    } else {
        format!("{} {}", r.code, text.trim())
    }
}

fn send_error(e: mail_send::Error) -> HostError {
    match e {
        mail_send::Error::UnexpectedReply(r) if r.code >= 500 => HostError::Permanent(reply_text(&r)),
        mail_send::Error::UnexpectedReply(r) => HostError::Temporary(reply_text(&r)),
        mail_send::Error::AuthenticationFailed(r) => {
            HostError::Temporary(format!("relay login failed: {}", reply_text(&r)))
        }
        mail_send::Error::Timeout => HostError::Temporary("timed out".into()),
        other => HostError::Temporary(other.to_string()),
    }
}

/// The permanent failure of a domain whose mail servers all have non-public addresses:
/// RFC 3463 X.4.6 "routing loop detected" when they are this machine, else X.4.4 "unable
/// to route".
fn non_public(domain: &str, range: SpecialRange) -> String {
    if range.is_this_machine() {
        format!("554 5.4.6 the mail servers of {domain} point back at this machine")
    } else {
        format!("554 5.4.4 the mail servers of {domain} have only {range} addresses")
    }
}

/// Splits `host:port`.
fn host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

impl Deliverer {
    /// A deliverer over `dns` with the `[outbound]` settings and EHLO name `helo`.
    pub(super) fn new(dns: Dns, config: OutboundConfig, helo: String) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let opportunistic = crate::platform::tls::unverified_client_config(provider.clone())?;
        let verified = if config.relay.is_empty() {
            None
        } else {
            // Without a usable trust store the smarthost cannot be verified: delivery to it
            // is then deferred with a clear reason rather than done unverified.
            rustls_platform_verifier::Verifier::new(provider.clone())
                .and_then(|v| {
                    Ok(ClientConfig::builder_with_provider(provider.clone())
                        .with_safe_default_protocol_versions()?
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(v))
                        .with_no_client_auth())
                })
                .map(|c| TlsConnector::from(Arc::new(c)))
                .inspect_err(|e| tracing::warn!(error = %e, "no certificate verifier for the smarthost"))
                .ok()
        };
        Ok(Self { dns, config, helo, opportunistic: TlsConnector::from(Arc::new(opportunistic)), verified })
    }

    /// The route of a recipient domain.
    pub(super) fn route(&self, domain: &str) -> Route {
        if !self.config.relay.is_empty() {
            Route::Relay
        } else if let Some(target) = self.config.mx_override.get(domain) {
            Route::Override(target.clone())
        } else {
            Route::Mx(domain.to_owned())
        }
    }

    /// Delivers `message` from `from` to `rcpts` along `route`; one outcome per recipient,
    /// in order.
    pub(super) async fn deliver(&self, route: &Route, from: &str, rcpts: &[String], message: &[u8]) -> Vec<Outcome> {
        let targets = match self.targets(route).await {
            Ok(t) => t,
            Err(outcome) => return vec![outcome; rcpts.len()],
        };
        let mut out = Vec::with_capacity(rcpts.len());
        for chunk in rcpts.chunks(RCPTS_PER_TRANSACTION) {
            out.extend(self.deliver_chunk(route, &targets, from, chunk, message).await);
        }
        out
    }

    async fn deliver_chunk(
        &self,
        route: &Route,
        targets: &[(String, SocketAddr)],
        from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Vec<Outcome> {
        let first_tls = match route {
            Route::Relay if self.config.relay_implicit_tls => TlsMode::RelayImplicit,
            Route::Relay => TlsMode::RelayStartTls,
            _ => TlsMode::Opportunistic,
        };
        let mut last = String::from("no server to try");
        let mut last_remote = None;
        for (name, addr) in targets {
            let mut tls = first_tls;
            loop {
                match self.session(name, *addr, tls, from, rcpts, message).await {
                    Ok(outcomes) => return outcomes,
                    Err(HostError::Permanent(reply)) => {
                        let remote = Some(name.clone());
                        return rcpts
                            .iter()
                            .map(|_| Outcome::Failed { reply: reply.clone(), remote: remote.clone() })
                            .collect();
                    }
                    Err(HostError::TlsFailed(e)) if tls == TlsMode::Opportunistic => {
                        tracing::info!(host = %name, error = %e, "TLS handshake failed; retrying without TLS");
                        tls = TlsMode::Off;
                    }
                    Err(HostError::TlsFailed(e)) | Err(HostError::Temporary(e)) => {
                        tracing::info!(host = %name, %addr, error = %e, "delivery attempt failed");
                        last = e;
                        last_remote = Some(name.clone());
                        break;
                    }
                }
            }
        }
        rcpts.iter().map(|_| Outcome::Deferred { reply: last.clone(), remote: last_remote.clone() }).collect()
    }

    /// The addresses to try, in order, or the outcome for every recipient when there are none.
    async fn targets(&self, route: &Route) -> Result<Vec<(String, SocketAddr)>, Outcome> {
        let deferred = |reply: String| Outcome::Deferred { reply, remote: None };
        let (hosts, port): (Vec<String>, u16) = match route {
            Route::Relay => {
                let (h, p) = host_port(&self.config.relay).ok_or_else(|| deferred("bad outbound.relay".into()))?;
                (vec![h], p)
            }
            Route::Override(target) => {
                let (h, p) = host_port(target).ok_or_else(|| deferred("bad outbound.mx_override".into()))?;
                (vec![h], p)
            }
            Route::Mx(domain) => match self.dns.mx(domain).await {
                Ok(mx) => {
                    // RFC 7505: a single MX of "." means the domain takes no mail.
                    if mx.len() == 1 && mx[0].host.is_empty() {
                        return Err(Outcome::Failed {
                            reply: format!("556 5.1.10 {domain} accepts no mail (null MX)"),
                            remote: None,
                        });
                    }
                    (mx.into_iter().filter(|m| !m.host.is_empty()).map(|m| m.host).collect(), self.config.mx_port)
                }
                // RFC 5321 §5.1: without MX records the domain itself is the host.
                Err(LookupError::NoRecords(_)) => (vec![domain.clone()], self.config.mx_port),
                Err(LookupError::NoSuchDomain(_)) => {
                    return Err(Outcome::Failed {
                        reply: format!("550 5.1.2 domain {domain} does not exist"),
                        remote: None,
                    });
                }
                Err(e) => return Err(deferred(e.to_string())),
            },
        };
        let mut targets = Vec::new();
        let mut last_error = None;
        for host in hosts {
            match self.dns.addresses(&host).await {
                Ok(ips) => targets.extend(ips.into_iter().map(|ip| (host.clone(), SocketAddr::new(ip, port)))),
                Err(e) => last_error = Some(e),
            }
        }
        if let Route::Mx(domain) = route
            && !self.config.allow_private_targets
        {
            // The reason given: a loop into this machine when there is one, else the first range.
            let mut refused: Option<SpecialRange> = None;
            targets.retain(|(host, addr)| {
                let Some(range) = special_range(addr.ip()) else { return true };
                tracing::info!(%host, %addr, %range, "not delivering to a non-public address");
                if refused.is_none() || range.is_this_machine() {
                    refused = Some(range);
                }
                false
            });
            if let (true, Some(range)) = (targets.is_empty(), refused) {
                return Err(Outcome::Failed { reply: non_public(domain, range), remote: None });
            }
        }
        if targets.is_empty() {
            return match (route, last_error) {
                (Route::Mx(domain), Some(LookupError::NoSuchDomain(_) | LookupError::NoRecords(_))) => {
                    Err(deferred(format!("no address for the mail servers of {domain}")))
                }
                (_, Some(e)) => Err(deferred(e.to_string())),
                (_, None) => Err(deferred("no address to deliver to".into())),
            };
        }
        Ok(targets)
    }

    /// One SMTP session with one target.
    async fn session(
        &self,
        name: &str,
        addr: SocketAddr,
        tls: TlsMode,
        from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<Vec<Outcome>, HostError> {
        let connect = Duration::from_secs(self.config.connect_timeout_seconds);
        let command = Duration::from_secs(self.config.command_timeout_seconds);
        let stream = match tokio::time::timeout(connect, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(HostError::Temporary(format!("cannot connect to {name} ({addr}): {e}"))),
            Err(_) => return Err(HostError::Temporary(format!("cannot connect to {name} ({addr}): timed out"))),
        };
        let client = SmtpClient { stream, timeout: command };
        let relay = matches!(tls, TlsMode::RelayStartTls | TlsMode::RelayImplicit);
        let tls_name = name.trim_start_matches('[').trim_end_matches(']');
        if tls == TlsMode::RelayImplicit {
            let connector = self.verified.as_ref().ok_or_else(|| HostError::Temporary("no TLS verifier".into()))?;
            let mut client = client.into_tls(connector, tls_name).await.map_err(send_error)?;
            greeting(&mut client, command).await?;
            let caps = self.hello(&mut client).await?;
            return self.transaction(&mut client, &caps, (relay, true), name, addr.ip(), from, rcpts, message).await;
        }
        let mut client = client;
        greeting(&mut client, command).await?;
        let caps = self.hello(&mut client).await?;
        let connector = match tls {
            TlsMode::Opportunistic => Some(&self.opportunistic),
            TlsMode::RelayStartTls => self.verified.as_ref(),
            _ => None,
        };
        match connector {
            Some(connector) if caps.has_capability(EXT_START_TLS) => {
                let mut client = client.start_tls(connector, tls_name).await.map_err(|e| match e {
                    mail_send::Error::Tls(e) => HostError::TlsFailed(e.to_string()),
                    mail_send::Error::Io(e) => HostError::TlsFailed(e.to_string()),
                    other => send_error(other),
                })?;
                let caps = self.hello(&mut client).await?;
                self.transaction(&mut client, &caps, (relay, true), name, addr.ip(), from, rcpts, message).await
            }
            _ => self.transaction(&mut client, &caps, (relay, false), name, addr.ip(), from, rcpts, message).await,
        }
    }

    /// EHLO, falling back to HELO for servers that refuse it (RFC 5321 §3.2).
    async fn hello<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut SmtpClient<T>,
    ) -> Result<EhloResponse<String>, HostError> {
        match client.ehlo(&self.helo).await {
            Ok(caps) => Ok(caps),
            Err(mail_send::Error::UnexpectedReply(r)) if r.code >= 500 => {
                let r = client.cmd(format!("HELO {}\r\n", self.helo)).await.map_err(send_error)?;
                check(&r)?;
                Ok(EhloResponse::default())
            }
            Err(e) => Err(send_error(e)),
        }
    }

    /// MAIL, RCPT for each recipient, DATA; then QUIT.
    #[allow(clippy::too_many_arguments)]
    async fn transaction<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut SmtpClient<T>,
        caps: &EhloResponse<String>,
        (relay, tls_active): (bool, bool),
        name: &str,
        ip: IpAddr,
        from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<Vec<Outcome>, HostError> {
        if relay && !self.config.relay_username.is_empty() {
            if !tls_active && !ip.is_loopback() {
                return Err(HostError::Temporary(
                    "the smarthost offers no TLS; not sending the password in clear".into(),
                ));
            }
            let creds = Credentials::new(self.config.relay_username.clone(), self.config.relay_password.clone());
            client.authenticate(&creds, caps).await.map_err(send_error)?;
        }
        // RFC 6152: declare 8-bit content where the server understands it.
        let body = if !message.is_ascii() && caps.has_capability(EXT_8BIT_MIME) { " BODY=8BITMIME" } else { "" };
        let r = client.cmd(format!("MAIL FROM:<{from}>{body}\r\n")).await.map_err(send_error)?;
        check(&r)?;
        let mut answers = Vec::with_capacity(rcpts.len());
        for rcpt in rcpts {
            let r = client.cmd(format!("RCPT TO:<{rcpt}>\r\n")).await.map_err(send_error)?;
            answers.push(r);
        }
        let remote = name.to_owned();
        let accepted = answers.iter().filter(|r| (200..300).contains(&r.code)).count();
        let data_reply = if accepted > 0 {
            let r = client.cmd("DATA\r\n").await.map_err(send_error)?;
            if r.code != 354 {
                check(&r)?;
                return Err(HostError::Temporary(format!("DATA answered {}", reply_text(&r))));
            }
            let timeout = client.timeout;
            let end = tokio::time::timeout(timeout, async {
                client.write_message(without_final_crlf(message)).await?;
                client.read().await
            })
            .await
            .map_err(|_| HostError::Temporary("timed out after the message data".into()))?
            .map_err(send_error)?;
            Some(end)
        } else {
            let _ = client.cmd("RSET\r\n").await;
            None
        };
        let _ = client.cmd("QUIT\r\n").await;
        Ok(answers
            .iter()
            .map(|r| {
                let rcpt_reply = reply_text(r);
                match (r.code, &data_reply) {
                    (200..=299, Some(d)) if (200..300).contains(&d.code) => {
                        Outcome::Delivered { reply: reply_text(d), remote: remote.clone() }
                    }
                    (200..=299, Some(d)) if d.code >= 500 => {
                        Outcome::Failed { reply: reply_text(d), remote: Some(remote.clone()) }
                    }
                    (200..=299, Some(d)) => Outcome::Deferred { reply: reply_text(d), remote: Some(remote.clone()) },
                    (500.., _) => Outcome::Failed { reply: rcpt_reply, remote: Some(remote.clone()) },
                    _ => Outcome::Deferred { reply: rcpt_reply, remote: Some(remote.clone()) },
                }
            })
            .collect())
    }
}

/// Reads the greeting (RFC 5321 §4.2: 220, or 554 for "no service here").
async fn greeting<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    timeout: Duration,
) -> Result<(), HostError> {
    let r = tokio::time::timeout(timeout, client.read())
        .await
        .map_err(|_| HostError::Temporary("no greeting".into()))?
        .map_err(send_error)?;
    check(&r)
}

/// A 2xx/3xx reply is fine; 4xx is temporary, 5xx permanent.
fn check(r: &Response<String>) -> Result<(), HostError> {
    match r.code {
        200..=399 => Ok(()),
        500.. => Err(HostError::Permanent(reply_text(r))),
        _ => Err(HostError::Temporary(reply_text(r))),
    }
}
