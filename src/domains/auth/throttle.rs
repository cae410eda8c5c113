//! Failed logins and what they cost: throttling per (account, client network) and bans of
//! networks that fail across many accounts, fail2ban-like. A network is what the rate
//! limits count ([`limits::rate_key`]): an IPv4 address, an IPv6 /64. Nobody can lock an
//! account for others: failures from one network throttle that network's tries on that
//! account only, for the rest of the counting window.
//!
//! Design: the counters live in memory (a restart forgets them, which gives an attacker
//! nothing that waiting would not). Bans live in the `network_bans` table, because the
//! command line (`postcast bans list`, `postcast bans lift`) is another process working on
//! the same database: the server reads the client network's row on every login attempt (one
//! primary-key lookup, after the per-address rate limit has capped how often one network
//! can ask), so a ban lifted on the command line ends at the next attempt and there is no
//! cache to go stale. Bans and throttles answer the same `RateLimited` on every door, for
//! known and unknown names alike; nothing here speaks a protocol.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set};
use serde::Serialize;

use super::entities::network_ban;
use super::limits::rate_key;
use super::{AuthError, AuthService, ClientInfo};
use crate::platform::db::now;

/// A banned network as the command line lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkBan {
    /// An IPv4 address, or an IPv6 /64 as `2001:db8:1:2::/64`.
    pub network: String,
    /// Unix seconds.
    pub banned_at: i64,
    /// Unix seconds from which logins from it are let through again.
    pub until: i64,
    /// Failed attempts that got it banned.
    pub failures: i32,
}

impl From<network_ban::Model> for NetworkBan {
    fn from(m: network_ban::Model) -> Self {
        Self { network: m.network, banned_at: m.banned_at, until: m.until, failures: m.failures }
    }
}

/// The most characters of a login name that a counter key keeps (valid names have 32).
const ACCOUNT_KEY_CHARS: usize = 64;

/// The network an operator names, as bans are stored: an address is taken as its network
/// (an IPv6 address as its /64), and `ADDRESS/64` is accepted for IPv6.
pub fn parse_network(text: &str) -> Option<String> {
    let text = text.trim();
    let ip = match text.split_once('/') {
        Some((addr, "64")) => addr.parse::<std::net::Ipv6Addr>().ok()?.into(),
        Some(_) => return None,
        None => text.parse().ok()?,
    };
    Some(rate_key(ip))
}

impl AuthService {
    /// The account part of counter keys and the name looked up: trimmed, lowercased, and
    /// without `@` the mail domain. Unknown names are counted like known ones, so a
    /// throttle says nothing about whether an account exists.
    pub(super) fn local_name(&self, username: &str) -> String {
        let name = username.trim().to_ascii_lowercase();
        let local = name.strip_suffix(&format!("@{}", self.inner.domain)).unwrap_or(&name);
        local.chars().take(ACCOUNT_KEY_CHARS).collect()
    }

    /// Everything that may refuse an attempt on `account` before its password is looked
    /// at: the per-address limit for `what`, a ban of the client's network, and the
    /// throttle of this account from this network.
    pub(super) async fn admit(&self, what: &str, account: &str, client: &ClientInfo) -> Result<(), AuthError> {
        self.limit_ip(what, client)?;
        let network = rate_key(client.ip);
        self.check_ban(&network).await?;
        let limit = self.inner.cfg.failures_per_account_network;
        if limit > 0
            && let Err(wait) = self.inner.failures.check(&pair_key(account, &network), limit)
        {
            metrics::counter!("postcast_auth_refused_total", "reason" => "throttled").increment(1);
            return Err(AuthError::RateLimited(wait));
        }
        Ok(())
    }

    /// Refuses while `network` has a ban that has not run out.
    async fn check_ban(&self, network: &str) -> Result<(), AuthError> {
        let Some(ban) = network_ban::Entity::find_by_id(network.to_owned()).one(self.db()).await? else {
            return Ok(());
        };
        let left = ban.until - now();
        if left <= 0 {
            return Ok(());
        }
        metrics::counter!("postcast_auth_refused_total", "reason" => "banned").increment(1);
        Err(AuthError::RateLimited(left as u64))
    }

    /// Counts a failed attempt on `account` from the client's network, and bans the network
    /// once it failed `network_ban_failures` times across accounts. When the account exists
    /// (`user_id`), the failure (with `detail`, for the owner's eyes) and the start of a
    /// throttle go to its security log in the background, so the reply takes as long as for
    /// a name that does not exist.
    pub(super) async fn count_failure(
        &self,
        account: &str,
        user_id: Option<i64>,
        kind: &'static str,
        detail: &'static str,
        client: &ClientInfo,
    ) {
        metrics::counter!("postcast_auth_failures_total").increment(1);
        let network = rate_key(client.ip);
        let cfg = &self.inner.cfg;
        let pair = pair_key(account, &network);
        let limit = cfg.failures_per_account_network;
        let throttled = limit > 0
            && self.inner.failures.hit(&pair, limit).is_ok()
            && self.inner.failures.check(&pair, limit).is_err();
        if let Some(user_id) = user_id {
            let (me, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                me.log(me.db(), user_id, kind, &client, detail).await;
                if throttled {
                    let why = "too many failed attempts from this network; other networks are not affected";
                    me.log(me.db(), user_id, "login_throttled", &client, why).await;
                }
            });
        }
        let ban_limit = cfg.network_ban_failures;
        let key = format!("net:{network}");
        if ban_limit > 0
            && self.inner.network_failures.hit(&key, ban_limit).is_ok()
            && self.inner.network_failures.check(&key, ban_limit).is_err()
        {
            self.inner.network_failures.reset(&key);
            self.ban(&network, ban_limit).await;
        }
    }

    /// Forgets the failures on `account` from the client's network (after a login).
    pub(super) fn clear_failures(&self, account: &str, client: &ClientInfo) {
        self.inner.failures.reset(&pair_key(account, &rate_key(client.ip)));
    }

    /// Bans `network` for `network_ban_seconds`, replacing an older ban, and clears out
    /// bans that ran out. Written before the reply, so the next attempt finds it.
    async fn ban(&self, network: &str, failures: u32) {
        let (t, seconds) = (now(), self.inner.cfg.network_ban_seconds);
        let row = network_ban::ActiveModel {
            network: Set(network.to_owned()),
            banned_at: Set(t),
            until: Set(t.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))),
            failures: Set(i32::try_from(failures).unwrap_or(i32::MAX)),
        };
        let upsert = network_ban::Entity::insert(row)
            .on_conflict(
                OnConflict::column(network_ban::Column::Network)
                    .update_columns([
                        network_ban::Column::BannedAt,
                        network_ban::Column::Until,
                        network_ban::Column::Failures,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await;
        if let Err(e) = upsert {
            tracing::error!(network, error = %e, "a network ban could not be stored");
            return;
        }
        tracing::warn!(network, failures, seconds, "network banned after failed logins across accounts");
        metrics::counter!("postcast_auth_network_bans_total").increment(1);
        let expired =
            network_ban::Entity::delete_many().filter(network_ban::Column::Until.lte(t)).exec(self.db()).await;
        if let Err(e) = expired {
            tracing::warn!(error = %e, "expired network bans could not be removed");
        }
    }

    /// The bans in force, the soonest to end first.
    pub async fn bans(&self) -> Result<Vec<NetworkBan>, AuthError> {
        let rows = network_ban::Entity::find()
            .filter(network_ban::Column::Until.gt(now()))
            .order_by_asc(network_ban::Column::Until)
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// How many networks are banned now (for `/metrics`).
    pub async fn banned_networks(&self) -> Result<u64, AuthError> {
        Ok(network_ban::Entity::find().filter(network_ban::Column::Until.gt(now())).count(self.db()).await?)
    }

    /// Ends the ban of the network `text` names (an address, or an IPv6 `ADDRESS/64`);
    /// returns the network. `NotFound` when it is not banned.
    pub async fn lift_ban(&self, text: &str) -> Result<String, AuthError> {
        let network = parse_network(text)
            .ok_or(AuthError::InvalidInput("name a network as an IPv4 address, or an IPv6 address or its /64"))?;
        let gone = network_ban::Entity::delete_many()
            .filter(network_ban::Column::Network.eq(&network))
            .filter(network_ban::Column::Until.gt(now()))
            .exec(self.db())
            .await?;
        if gone.rows_affected == 0 {
            return Err(AuthError::NotFound("ban"));
        }
        tracing::info!(network, "network ban lifted");
        Ok(network)
    }
}

/// The counter key of failures on `account` from `network`.
fn pair_key(account: &str, network: &str) -> String {
    format!("fail:{network}:{account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_named_as_bans_store_them() {
        let cases = [
            ("192.0.2.7", Some("192.0.2.7")),
            (" ::ffff:192.0.2.7 ", Some("192.0.2.7")),
            ("2001:db8:1:2::5", Some("2001:db8:1:2::/64")),
            ("2001:db8:1:2::/64", Some("2001:db8:1:2::/64")),
            ("2001:db8:1:2::/48", None),
            ("192.0.2.0/24", None),
            ("192.0.2.7/64", None),
            ("example.org", None),
            ("", None),
        ];
        for (text, network) in cases {
            assert_eq!(parse_network(text).as_deref(), network, "{text}");
        }
    }
}
