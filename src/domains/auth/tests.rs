//! Service-level tests of the auth domain on a real SQLite file.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::password::Hasher;
use super::sms::{SmsError, SmsSender};
use super::*;
use crate::config::Config;

/// Keeps every text "sent".
#[derive(Default)]
struct Outbox(Mutex<Vec<(String, String)>>);

impl SmsSender for Outbox {
    fn send<'a>(&'a self, to: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SmsError>> {
        self.0.lock().unwrap().push((to.to_owned(), text.to_owned()));
        Box::pin(async { Ok(()) })
    }
}

impl Outbox {
    fn last_code(&self) -> String {
        let texts = self.0.lock().unwrap();
        texts.last().unwrap().1[..6].to_owned()
    }
}

async fn service(cfg: Config) -> (tempfile::TempDir, AuthService, Arc<Outbox>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let db = crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap();
    let outbox = Arc::new(Outbox::default());
    let hasher = Hasher::new(1024, 1, 1).unwrap();
    let svc = AuthService::with_sms(
        db.clone(),
        Bus::new(db),
        &cfg,
        &crate::platform::secrets::ServerSecret::generate(),
        hasher,
        outbox.clone(),
    )
    .unwrap();
    (dir, svc, outbox)
}

fn client() -> ClientInfo {
    ClientInfo::local("test")
}

const PW: &str = "correct horse battery";

#[tokio::test]
async fn app_passwords_replace_the_account_password_once_a_factor_is_on() {
    let mut cfg = Config::default();
    cfg.sms.resend_interval_seconds = 0;
    let (_d, svc, outbox) = service(cfg).await;
    let u = svc.create_user("carol", PW, &client()).await.unwrap();
    assert!(svc.verify_client_password("carol@localhost", PW, &client()).await.is_ok());
    let (_, app_pw) = svc.create_app_password(u.id, "mutt", &client()).await.unwrap();
    assert!(svc.verify_client_password("carol", &app_pw, &client()).await.is_ok());

    svc.sms_start(u.id, "+49 151 1234567", &client()).await.unwrap();
    let codes = svc.sms_confirm(u.id, &outbox.last_code(), &client()).await.unwrap();
    assert_eq!(codes.len(), 10);
    assert!(matches!(svc.verify_client_password("carol", PW, &client()).await, Err(AuthError::InvalidCredentials)));
    assert!(svc.verify_client_password("carol", &app_pw.to_uppercase(), &client()).await.is_ok());
    let id = svc.app_passwords(u.id).await.unwrap()[0].id;
    svc.revoke_app_password(u.id, id, &client()).await.unwrap();
    assert!(svc.verify_client_password("carol", &app_pw, &client()).await.is_err());
}

#[tokio::test]
async fn sms_codes_expire_and_burn_after_max_attempts() {
    let mut cfg = Config::default();
    cfg.sms.resend_interval_seconds = 0;
    cfg.sms.max_attempts = 3;
    let (_d, svc, outbox) = service(cfg).await;
    let u = svc.create_user("dave", PW, &client()).await.unwrap();
    svc.sms_start(u.id, "+4915112345678", &client()).await.unwrap();
    let good = outbox.last_code();
    let bad = if good == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        assert!(matches!(svc.sms_confirm(u.id, bad, &client()).await, Err(AuthError::InvalidCode)));
    }
    assert!(svc.sms_confirm(u.id, &good, &client()).await.is_err(), "burnt after 3 tries");

    svc.sms_start(u.id, "+4915112345678", &client()).await.unwrap();
    let good = outbox.last_code();
    sms_code_expire_all(&svc).await;
    assert!(svc.sms_confirm(u.id, &good, &client()).await.is_err(), "expired");
}

async fn sms_code_expire_all(svc: &AuthService) {
    use entities::sms_code;
    sms_code::Entity::update_many()
        .col_expr(sms_code::Column::ExpiresAt, (now() - 1).into())
        .exec(svc.db())
        .await
        .unwrap();
}

#[tokio::test]
async fn resends_are_throttled() {
    let (_d, svc, _outbox) = service(Config::default()).await;
    let u = svc.create_user("erin", PW, &client()).await.unwrap();
    svc.sms_start(u.id, "+4915112345678", &client()).await.unwrap();
    assert!(matches!(svc.sms_start(u.id, "+4915112345678", &client()).await, Err(AuthError::RateLimited(_))));
}

fn from(ip: &str) -> ClientInfo {
    ClientInfo { ip: ip.parse().expect("ip"), user_agent: "test".into() }
}

/// The kinds in `user`'s security log, once the background writes of failures landed.
async fn logged_kinds(svc: &AuthService, user: &str, wanted: &str) -> Vec<String> {
    let u = svc.find_by_username(user).await.unwrap().unwrap();
    for _ in 0..100 {
        let kinds: Vec<String> = svc.security_log(u.id, 50).await.unwrap().into_iter().map(|e| e.kind).collect();
        if kinds.iter().any(|k| k == wanted) {
            return kinds;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    svc.security_log(u.id, 50).await.unwrap().into_iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn failures_throttle_the_account_from_that_network_only() {
    let mut cfg = Config::default();
    cfg.auth.failures_per_account_network = 3;
    cfg.auth.attempts_per_ip_per_minute = 100;
    let (_d, svc, _) = service(cfg).await;
    svc.create_user("frank", PW, &client()).await.unwrap();
    let attacker = from("203.0.113.9");
    for _ in 0..3 {
        assert!(matches!(svc.login("frank", "wrong password!", &attacker).await, Err(AuthError::InvalidCredentials)));
    }
    // That network may not try frank any more, not even with the right password...
    assert!(matches!(svc.login("frank", PW, &attacker).await, Err(AuthError::RateLimited(_))));
    assert!(matches!(svc.login("Frank@localhost", PW, &attacker).await, Err(AuthError::RateLimited(_))));
    assert!(matches!(svc.verify_client_password("frank", PW, &attacker).await, Err(AuthError::RateLimited(_))));
    // ...but frank logs in from anywhere else, and the attacker may try other accounts.
    assert!(matches!(svc.login("frank", PW, &from("198.51.100.1")).await, Ok(LoginOutcome::Session { .. })));
    assert!(svc.verify_client_password("frank", PW, &from("2001:db8::1")).await.is_ok());
    assert!(matches!(svc.login("nobody", "wrong password!", &attacker).await, Err(AuthError::InvalidCredentials)));
    // An unknown name is throttled just like a real one.
    for _ in 0..2 {
        assert!(matches!(svc.login("nobody", "wrong password!", &attacker).await, Err(AuthError::InvalidCredentials)));
    }
    assert!(matches!(svc.login("nobody", PW, &attacker).await, Err(AuthError::RateLimited(_))));
    let kinds = logged_kinds(&svc, "frank", "login_throttled").await;
    assert!(kinds.iter().any(|k| k == "login_throttled"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "account_locked"), "{kinds:?}");
}

#[tokio::test]
async fn a_throttle_ends_with_the_failure_window() {
    let mut cfg = Config::default();
    cfg.auth.failures_per_account_network = 2;
    cfg.auth.failure_window_seconds = 1;
    let (_d, svc, _) = service(cfg).await;
    svc.create_user("kim", PW, &client()).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(svc.login("kim", "wrong password!", &client()).await, Err(AuthError::InvalidCredentials)));
    }
    assert!(matches!(svc.login("kim", PW, &client()).await, Err(AuthError::RateLimited(1))));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(svc.login("kim", PW, &client()).await, Ok(LoginOutcome::Session { .. })));
}

#[tokio::test]
async fn a_network_failing_across_accounts_is_banned_until_lifted() {
    let mut cfg = Config::default();
    cfg.auth.failures_per_account_network = 2;
    cfg.auth.network_ban_failures = 5;
    cfg.auth.attempts_per_ip_per_minute = 100;
    let (_d, svc, _) = service(cfg).await;
    svc.create_user("gwen", PW, &client()).await.unwrap();
    let attacker = from("2001:db8:6:6::1");
    for name in ["a1", "a2", "a3", "a4"] {
        assert!(matches!(svc.login(name, "wrong password!", &attacker).await, Err(AuthError::InvalidCredentials)));
    }
    assert!(svc.bans().await.unwrap().is_empty(), "four failures ban nobody");
    assert!(matches!(svc.login("a5", "wrong password!", &attacker).await, Err(AuthError::InvalidCredentials)));
    let bans = svc.bans().await.unwrap();
    assert_eq!(bans.iter().map(|b| (b.network.as_str(), b.failures)).collect::<Vec<_>>(), [("2001:db8:6:6::/64", 5)]);
    assert_eq!(svc.banned_networks().await.unwrap(), 1);
    // Every address of the /64 is refused, even with the right password; others are not.
    let same_64 = from("2001:db8:6:6:ffff::2");
    assert!(matches!(svc.login("gwen", PW, &same_64).await, Err(AuthError::RateLimited(_))));
    assert!(matches!(svc.verify_client_password("gwen", PW, &same_64).await, Err(AuthError::RateLimited(_))));
    assert!(matches!(svc.login("gwen", PW, &from("2001:db8:6:7::1")).await, Ok(LoginOutcome::Session { .. })));

    assert!(matches!(svc.lift_ban("2001:db8:6:5::1").await, Err(AuthError::NotFound(_))));
    assert!(matches!(svc.lift_ban("not a network").await, Err(AuthError::InvalidInput(_))));
    assert_eq!(svc.lift_ban("2001:db8:6:6::/64").await.unwrap(), "2001:db8:6:6::/64");
    assert!(svc.bans().await.unwrap().is_empty());
    assert!(matches!(svc.login("gwen", PW, &same_64).await, Ok(LoginOutcome::Session { .. })));
}

#[tokio::test]
async fn unknown_disabled_second_factor_and_wrong_password_get_one_answer() {
    let mut cfg = Config::default();
    cfg.auth.attempts_per_ip_per_minute = 100;
    cfg.sms.resend_interval_seconds = 0;
    let (_d, svc, outbox) = service(cfg).await;
    svc.create_user("hana", PW, &client()).await.unwrap();
    svc.create_user("ivan", PW, &client()).await.unwrap();
    let jo = svc.create_user("jo", PW, &client()).await.unwrap();
    svc.sms_start(jo.id, "+4915112345678", &client()).await.unwrap();
    svc.sms_confirm(jo.id, &outbox.last_code(), &client()).await.unwrap();
    svc.disable_user("ivan").await.unwrap();
    let tries = [("nobody", PW), ("hana", "wrong password!"), ("ivan", PW), ("jo", PW)];
    for (name, password) in tries {
        let r = svc.verify_client_password(name, password, &client()).await;
        assert!(matches!(r, Err(AuthError::InvalidCredentials)), "{name}: {r:?}");
    }
    for (name, password) in &tries[..3] {
        let r = svc.login(name, password, &client()).await;
        assert!(matches!(r, Err(AuthError::InvalidCredentials)), "{name}: {r:?}");
    }
}

#[tokio::test]
async fn disabling_ends_sessions() {
    let (_d, svc, _) = service(Config::default()).await;
    svc.create_user("gina", PW, &client()).await.unwrap();
    let LoginOutcome::Session { token, .. } = svc.login("gina", PW, &client()).await.unwrap() else {
        panic!("no second factor expected")
    };
    assert!(svc.authenticate(&token).await.is_ok());
    svc.disable_user("gina").await.unwrap();
    assert!(svc.authenticate(&token).await.is_err());
    assert!(matches!(svc.login("gina", PW, &client()).await, Err(AuthError::InvalidCredentials)));
}

/// Runs `n` copies of `attempt` at once on the multi-threaded runtime.
async fn all_at_once<F, Fut, T>(n: usize, attempt: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(attempt())).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_sms_codes_cannot_exceed_the_attempt_limit() {
    let mut cfg = Config::default();
    cfg.sms.resend_interval_seconds = 0;
    cfg.sms.max_attempts = 3;
    let (_d, svc, outbox) = service(cfg).await;
    let u = svc.create_user("hank", PW, &client()).await.unwrap();
    svc.sms_start(u.id, "+4915112345678", &client()).await.unwrap();
    let good = outbox.last_code();
    let bad = if good == "000000" { "111111" } else { "000000" };
    let results = all_at_once(20, || {
        let svc = svc.clone();
        async move { svc.sms_confirm(u.id, bad, &client()).await }
    })
    .await;
    assert!(results.iter().all(Result::is_err));
    assert!(svc.sms_confirm(u.id, &good, &client()).await.is_err(), "20 parallel guesses burn a 3-try code");
    let tries: Vec<i32> =
        entities::sms_code::Entity::find().all(svc.db()).await.unwrap().iter().map(|c| c.attempts).collect();
    assert_eq!(tries, vec![3], "only the allowed tries were counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_at_a_pending_login_get_only_the_allowed_tries() {
    let mut cfg = Config::default();
    cfg.sms.resend_interval_seconds = 0;
    cfg.sms.max_attempts = 3;
    cfg.auth.attempts_per_ip_per_minute = 1000;
    cfg.auth.failures_per_account_network = 1000;
    cfg.auth.network_ban_failures = 0;
    let (_d, svc, outbox) = service(cfg).await;
    let u = svc.create_user("ivy", PW, &client()).await.unwrap();
    svc.sms_start(u.id, "+4915112345678", &client()).await.unwrap();
    svc.sms_confirm(u.id, &outbox.last_code(), &client()).await.unwrap();
    let LoginOutcome::SecondFactor { pending, .. } = svc.login("ivy", PW, &client()).await.unwrap() else {
        panic!("a second factor is on")
    };
    let results = all_at_once(20, || {
        let (svc, pending) = (svc.clone(), pending.clone());
        async move { svc.login_second_factor(&pending, "99999999", &client()).await.map(|_| ()) }
    })
    .await;
    let judged = results.iter().filter(|r| matches!(r, Err(AuthError::InvalidCode))).count();
    let refused = results.iter().filter(|r| matches!(r, Err(AuthError::PendingExpired))).count();
    assert_eq!((judged, refused), (3, 17), "three tries judged, the rest refused unjudged");
    svc.send_login_sms(&pending, &client()).await.expect_err("the pending login is used up");
}

/// A service with registration closed and room for many registrations from one address.
async fn closed_service() -> (tempfile::TempDir, AuthService) {
    let mut cfg = Config::default();
    cfg.auth.open_registration = false;
    cfg.auth.registrations_per_ip_per_hour = 1000;
    let (d, svc, _) = service(cfg).await;
    (d, svc)
}

#[tokio::test]
async fn the_first_account_is_the_administrator_then_registration_closes() {
    let (_d, svc) = closed_service().await;
    assert!(svc.administrator().await.unwrap().is_none(), "an empty server has no administrator");
    let ada = svc.register("ada", PW, None, &client()).await.unwrap();
    assert!(ada.is_admin, "the first account is the administrator");
    assert_eq!(svc.administrator().await.unwrap().map(|u| u.id), Some(ada.id));
    assert!(matches!(svc.register("bob", PW, None, &client()).await, Err(AuthError::RegistrationClosed)));
    assert!(matches!(svc.register("bob", PW, Some("made-up"), &client()).await, Err(AuthError::InvalidInvitation)));
    assert!(svc.find_by_username("bob").await.unwrap().is_none(), "a refused registration makes no account");

    // The command line may always add accounts; they are not administrators.
    let carl = svc.create_user("carl", PW, &client()).await.unwrap();
    assert!(!carl.is_admin);
    assert!(matches!(svc.create_invitation(carl.id, &client()).await, Err(AuthError::NotAdmin)));

    let invitation = svc.create_invitation(ada.id, &client()).await.unwrap();
    assert!(invitation.expires_at > now() + INVITATION_LIFE - 60);
    let bob = svc.register("bob", PW, Some(&invitation.token), &client()).await.unwrap();
    assert!(!bob.is_admin);
    assert!(
        matches!(svc.register("dora", PW, Some(&invitation.token), &client()).await, Err(AuthError::InvalidInvitation)),
        "an invitation is used once"
    );
    let stored: Vec<String> =
        entities::invitation::Entity::find().all(svc.db()).await.unwrap().into_iter().map(|i| i.token_hash).collect();
    assert!(!stored.contains(&invitation.token), "only the fingerprint is stored: {stored:?}");
    assert!(stored.contains(&password::fingerprint(&invitation.token)));

    // The administrator, disabled, is nobody's administrator any more.
    svc.disable_user("ada").await.unwrap();
    assert!(svc.administrator().await.unwrap().is_none());
}

#[tokio::test]
async fn open_registration_lets_anybody_in_without_an_invitation() {
    let mut cfg = Config::default();
    cfg.auth.open_registration = true;
    let (_d, svc, _) = service(cfg).await;
    assert!(svc.register("ada", PW, None, &client()).await.unwrap().is_admin);
    let bob = svc.register("bob", PW, None, &client()).await.unwrap();
    assert!(!bob.is_admin, "only the first account is the administrator");
    assert!(!Config::default().auth.open_registration, "registration is closed by default");
}

#[tokio::test]
async fn the_first_account_made_on_the_command_line_is_the_administrator() {
    let (_d, svc) = closed_service().await;
    assert!(svc.create_user("root1", PW, &client()).await.unwrap().is_admin);
    assert!(!svc.create_user("root2", PW, &client()).await.unwrap().is_admin);
    assert!(matches!(svc.register("eve", PW, None, &client()).await, Err(AuthError::RegistrationClosed)));
    let invitation = svc.create_invitation_locally().await.unwrap();
    assert!(!svc.register("eve", PW, Some(&invitation.token), &client()).await.unwrap().is_admin);
}

#[tokio::test]
async fn an_expired_invitation_is_refused() {
    let (_d, svc) = closed_service().await;
    let ada = svc.register("ada", PW, None, &client()).await.unwrap();
    let invitation = svc.create_invitation(ada.id, &client()).await.unwrap();
    entities::invitation::Entity::update_many()
        .col_expr(entities::invitation::Column::ExpiresAt, now().into())
        .filter(entities::invitation::Column::TokenHash.eq(password::fingerprint(&invitation.token)))
        .exec(svc.db())
        .await
        .unwrap();
    let r = svc.register("bob", PW, Some(&invitation.token), &client()).await;
    assert!(matches!(r, Err(AuthError::InvalidInvitation)), "{r:?}");
    assert!(svc.find_by_username("bob").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_invitation_makes_one_account_under_parallel_registrations() {
    let (_d, svc) = closed_service().await;
    let ada = svc.register("ada", PW, None, &client()).await.unwrap();
    let token = svc.create_invitation(ada.id, &client()).await.unwrap().token;
    let n = std::sync::atomic::AtomicUsize::new(0);
    let n = Arc::new(n);
    let results = all_at_once(12, || {
        let (svc, token, n) = (svc.clone(), token.clone(), n.clone());
        async move {
            let name = format!("guest{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            svc.register(&name, PW, Some(&token), &client()).await
        }
    })
    .await;
    let made: Vec<&User> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "one invitation, one account: {results:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(AuthError::InvalidInvitation))), "{results:?}");
    assert_eq!(svc.list_users().await.unwrap().len(), 2, "no account of a losing registration is left");
    let used = entities::invitation::Entity::find()
        .filter(entities::invitation::Column::TokenHash.eq(password::fingerprint(&token)))
        .one(svc.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_by, Some(made[0].id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_first_registrations_make_one_administrator() {
    let (_d, svc) = closed_service().await;
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = all_at_once(8, || {
        let (svc, n) = (svc.clone(), n.clone());
        async move {
            let name = format!("first{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            svc.register(&name, PW, None, &client()).await
        }
    })
    .await;
    let made: Vec<&User> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "registration closes after the first account: {results:?}");
    assert!(made[0].is_admin);
    let admins = svc.list_users().await.unwrap().into_iter().filter(|u| u.is_admin).count();
    assert_eq!((svc.list_users().await.unwrap().len(), admins), (1, 1));
}

#[tokio::test]
async fn the_migration_makes_the_oldest_account_of_an_existing_server_its_administrator() {
    use migrations::{Migrator, MigratorTrait};
    let (_d, svc) = closed_service().await;
    let oldest = svc.create_user("oldest", PW, &client()).await.unwrap();
    svc.create_user("younger", PW, &client()).await.unwrap();
    // Back to the schema without administrators and invitations (and the bans after it),
    // then forward again over the existing accounts.
    Migrator::down(svc.db(), Some(2)).await.unwrap();
    Migrator::up(svc.db(), None).await.unwrap();
    let admins: Vec<String> =
        svc.list_users().await.unwrap().into_iter().filter(|u| u.is_admin).map(|u| u.username).collect();
    assert_eq!(admins, ["oldest"]);
    assert_eq!(svc.administrator().await.unwrap().map(|u| u.id), Some(oldest.id));
    let r = svc.register("newcomer", PW, None, &client()).await;
    assert!(matches!(r, Err(AuthError::RegistrationClosed)), "the first account is taken: {r:?}");
}

#[tokio::test]
async fn login_attempts_are_counted_per_ipv6_64_and_per_ipv4_address() {
    let mut cfg = Config::default();
    cfg.auth.attempts_per_ip_per_minute = 2;
    let (_d, svc, _) = service(cfg).await;
    let from = |ip: &str| ClientInfo { ip: ip.parse().expect("ip"), user_agent: "test".into() };
    // Two tries from one /64, each from a fresh address: the third is refused.
    for ip in ["2001:db8:0:1::1", "2001:db8:0:1::2"] {
        assert!(matches!(svc.login("nobody", PW, &from(ip)).await, Err(AuthError::InvalidCredentials)), "{ip}");
    }
    let refused = svc.login("nobody", PW, &from("2001:db8:0:1:ffff::3")).await;
    assert!(matches!(refused, Err(AuthError::RateLimited(_))), "{refused:?}");
    // The next /64 has its own count.
    assert!(matches!(svc.login("nobody", PW, &from("2001:db8:0:2::1")).await, Err(AuthError::InvalidCredentials)));
    // An IPv4-mapped address counts as its IPv4 address.
    for ip in ["192.0.2.1", "::ffff:192.0.2.1"] {
        assert!(matches!(svc.login("nobody", PW, &from(ip)).await, Err(AuthError::InvalidCredentials)), "{ip}");
    }
    assert!(matches!(svc.login("nobody", PW, &from("192.0.2.1")).await, Err(AuthError::RateLimited(_))));
    assert!(matches!(svc.login("nobody", PW, &from("192.0.2.2")).await, Err(AuthError::InvalidCredentials)));
}
