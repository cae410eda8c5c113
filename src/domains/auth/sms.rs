//! SMS senders for second-factor codes, chosen by `sms.provider`: `log` writes the text
//! to the server log (for loopback and test set-ups only, see [`unavailable_because`]), `webhook` POSTs `{to, text}` as JSON to a
//! URL (optional bearer token), `twilio` calls Twilio's Messages API. The domain decides
//! what to send; a sender only delivers.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::config::SmsConfig;
use crate::platform::config::ServerConfig;

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
#[error("SMS delivery failed: {0}")]
pub struct SmsError(pub String);

/// Something that delivers a text message.
pub trait SmsSender: Send + Sync {
    /// Sends `text` to the E.164 number `to`.
    fn send<'a>(&'a self, to: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SmsError>>;
}

/// Why SMS cannot be a second factor on a server configured with `sms` and `server`, if
/// it cannot: the `log` provider writes codes to the server's log, which is fit for a
/// server only its operator reaches (the HTTP door on loopback, no trusted proxy in front)
/// or for a test set-up that says so (`sms.allow_log_provider`).
pub fn unavailable_because(sms: &SmsConfig, server: &ServerConfig) -> Option<&'static str> {
    let loopback_only = server.http.ip().is_loopback() && server.trusted_proxies.is_empty();
    (sms.provider == "log" && !loopback_only && !sms.allow_log_provider).then_some(
        "text-message codes are not offered on this server: it has no SMS provider (sms.provider = \"log\" \
         writes codes to the server log)",
    )
}

/// Builds the sender the configuration names.
pub fn from_config(cfg: &SmsConfig) -> Arc<dyn SmsSender> {
    let http = || {
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|_| reqwest::Client::new())
    };
    match cfg.provider.as_str() {
        "webhook" => Arc::new(Webhook { http: http(), url: cfg.webhook_url.clone(), token: cfg.webhook_token.clone() }),
        "twilio" => Arc::new(Twilio {
            http: http(),
            base_url: cfg.twilio_base_url.trim_end_matches('/').to_owned(),
            sid: cfg.twilio_account_sid.clone(),
            token: cfg.twilio_auth_token.clone(),
            from: cfg.twilio_from.clone(),
        }),
        _ => Arc::new(LogSender),
    }
}

/// Writes messages to the server log.
pub struct LogSender;

impl SmsSender for LogSender {
    fn send<'a>(&'a self, to: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SmsError>> {
        Box::pin(async move {
            // The `log` provider exists to show the code to the operator; no other path
            // logs a code.
            tracing::info!(to, text, "SMS (log provider)");
            Ok(())
        })
    }
}

/// POSTs `{"to","text"}` to a URL.
pub struct Webhook {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl SmsSender for Webhook {
    fn send<'a>(&'a self, to: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SmsError>> {
        Box::pin(async move {
            let mut req = self.http.post(&self.url).json(&serde_json::json!({"to": to, "text": text}));
            if !self.token.is_empty() {
                req = req.bearer_auth(&self.token);
            }
            let resp = req.send().await.map_err(|e| SmsError(e.without_url().to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(SmsError(format!("webhook answered {}", resp.status())))
            }
        })
    }
}

/// Twilio's `POST /2010-04-01/Accounts/{sid}/Messages.json`.
pub struct Twilio {
    http: reqwest::Client,
    base_url: String,
    sid: String,
    token: String,
    from: String,
}

impl SmsSender for Twilio {
    fn send<'a>(&'a self, to: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SmsError>> {
        Box::pin(async move {
            let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base_url, self.sid);
            let body = format!("To={}&From={}&Body={}", urlencode(to), urlencode(&self.from), urlencode(text));
            let resp = self
                .http
                .post(url)
                .basic_auth(&self.sid, Some(&self.token))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(|e| SmsError(e.without_url().to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(SmsError(format!("twilio answered {}", resp.status())))
            }
        })
    }
}

/// `application/x-www-form-urlencoded` escaping.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Normalises a phone number to E.164 (`+` and 8–15 digits), dropping spaces, dashes,
/// dots and brackets.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let kept: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = kept.strip_prefix('+')?;
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
        Some(kept)
    } else {
        None
    }
}

/// `+49151****67`: enough to recognise, not enough to harvest.
pub fn mask_phone(phone: &str) -> String {
    let n = phone.len();
    if n <= 6 {
        return "*".repeat(n);
    }
    format!("{}{}{}", &phone[..4], "*".repeat(n - 6), &phone[n - 2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_e164() {
        assert_eq!(normalise_phone("+49 (151) 123-4567").as_deref(), Some("+491511234567"));
        assert_eq!(normalise_phone("0151 1234567"), None);
        assert_eq!(normalise_phone("+12"), None);
        assert_eq!(normalise_phone("+49abc1234567"), None);
        assert_eq!(mask_phone("+491511234567"), "+491*******67");
    }

    #[test]
    fn the_log_provider_serves_loopback_and_tests_only() {
        let mut sms = SmsConfig::default();
        let mut server = ServerConfig::default();
        assert_eq!(unavailable_because(&sms, &server), None, "the default listens on 127.0.0.1");
        server.http = "[::1]:8080".parse().unwrap();
        assert_eq!(unavailable_because(&sms, &server), None);
        server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        assert!(unavailable_because(&sms, &server).is_some(), "a proxy brings other clients");
        server.trusted_proxies.clear();
        server.http = "0.0.0.0:8080".parse().unwrap();
        assert!(unavailable_because(&sms, &server).is_some());
        sms.allow_log_provider = true;
        assert_eq!(unavailable_because(&sms, &server), None, "a test set-up may allow it");
        sms.allow_log_provider = false;
        sms.provider = "webhook".into();
        assert_eq!(unavailable_because(&sms, &server), None, "a real provider works anywhere");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(urlencode("+49 1&x=é"), "%2B49+1%26x%3D%C3%A9");
    }
}
