//! One IMAP session's state and its answers: not authenticated, authenticated, or with a
//! mailbox selected (RFC 9051 §3). It takes parsed commands and gives back the responses
//! to send, calling the auth and mail services; it does no I/O (the connection driver
//! does). Commands that work on mailboxes and messages live in [`super::cmd`]; this file
//! holds the dispatch, the capabilities and authentication.

use std::net::IpAddr;
use std::sync::Arc;

use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Atom, IString, NString, Tag, Vec1};
use imap_codec::imap_types::response::{Capability, Code, Data, StatusKind};
use imap_codec::imap_types::secret::Secret;

use super::reply::{self, Out, bad, no, no_code, ok, tagged};
use crate::domains::auth::{AuthError, AuthService, ClientInfo};
use crate::domains::mail::MailService;
use crate::domains::mail::uid_view::{UidEntry, UidMailbox};

/// What a session needs to know about its door.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Whether the door can start TLS on this connection (STARTTLS is offered then).
    pub starttls: bool,
    /// Whether loopback clients may log in without TLS.
    pub plaintext_login_on_loopback: bool,
}

/// What the connection does after sending a command's responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Reads the next command.
    Continue,
    /// Closes the connection (LOGOUT).
    Close,
    /// Runs the TLS handshake (STARTTLS), then goes on without a greeting.
    StartTls,
}

/// The responses to one command.
#[derive(Debug, Clone)]
pub struct Replies {
    /// Sent in order; the tagged status comes last.
    pub out: Vec<Out>,
    /// What happens once they are sent.
    pub then: Then,
}

impl Replies {
    fn go_on(out: Vec<Out>) -> Self {
        Self { out, then: Then::Continue }
    }
}

/// The next step of AUTHENTICATE.
#[derive(Debug, Clone)]
pub enum AuthStep {
    /// Send an empty challenge (`+ `) and wait for the client's response.
    Challenge,
    /// The exchange is over: send this tagged status.
    Done(Out),
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub(super) struct Account {
    /// Account id: every mail call takes it.
    pub(super) id: i64,
}

/// The selected mailbox: its messages in UID order as this session last told the client
/// (sequence number = position + 1).
#[derive(Debug, Clone)]
pub(super) struct Selected {
    /// The mailbox as it was when selected.
    pub(super) mailbox: UidMailbox,
    /// EXAMINE: no flag changes, no expunges.
    pub(super) read_only: bool,
    /// The messages the client knows, in UID order.
    pub(super) entries: Vec<UidEntry>,
}

/// The session state (RFC 9051 §3).
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Before LOGIN or AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated(Account),
    /// Logged in with a mailbox selected.
    Selected(Account, Selected),
}

/// One IMAP session.
pub struct Session {
    pub(super) mail: MailService,
    auth: AuthService,
    settings: Arc<SessionSettings>,
    peer: IpAddr,
    tls: bool,
    pub(super) state: State,
    /// The tag of an AUTHENTICATE waiting for the client's response.
    authenticating: Option<Tag<'static>>,
}

impl Session {
    /// A new session with a client at `peer`; `tls` when the connection is encrypted
    /// from the start.
    pub fn new(mail: MailService, auth: AuthService, settings: Arc<SessionSettings>, peer: IpAddr, tls: bool) -> Self {
        Self { mail, auth, settings, peer, tls, state: State::NotAuthenticated, authenticating: None }
    }

    /// The connection is encrypted now (after STARTTLS).
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// Whether LOGIN and AUTHENTICATE are allowed: under TLS, or from a loopback address
    /// when the configuration allows it (RFC 9051 §6.2.3: LOGINDISABLED otherwise).
    pub fn login_allowed(&self) -> bool {
        self.tls || (self.settings.plaintext_login_on_loopback && self.peer.to_canonical().is_loopback())
    }

    /// What the server can do in the current state (RFC 9051 §7.2.2).
    pub fn capabilities(&self) -> Vec1<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        if matches!(self.state, State::NotAuthenticated) {
            if self.settings.starttls && !self.tls {
                caps.push(Capability::StartTls);
            }
            if self.login_allowed() {
                caps.push(Capability::Auth(AuthMechanism::Plain));
                caps.push(Capability::SaslIr);
            } else {
                caps.push(Capability::LoginDisabled);
            }
        }
        caps.extend([
            Capability::LiteralPlus,
            Capability::Id,
            Capability::Enable,
            Capability::Namespace,
            Capability::Unselect,
        ]);
        // RFC 6154: LIST shows the special-use attributes of the system mailboxes.
        if let Ok(atom) = Atom::try_from("SPECIAL-USE") {
            caps.push(Capability::from(atom));
        }
        Vec1::unvalidated(caps)
    }

    /// The greeting's code: the capabilities, so clients need not ask.
    pub fn greeting_code(&self) -> Code<'static> {
        Code::Capability(self.capabilities())
    }

    /// The responses to `command`.
    pub async fn command(&mut self, command: Command<'static>) -> Replies {
        let tag = command.tag;
        let name = command.body.name();
        match (command.body, &self.state) {
            (CommandBody::Capability, _) => {
                Replies::go_on(vec![Out::Data(Data::Capability(self.capabilities())), ok(&tag, "CAPABILITY done")])
            }
            (CommandBody::Noop | CommandBody::Check, State::Selected(..)) => {
                let mut out = self.refresh().await;
                out.push(ok(&tag, &format!("{name} done")));
                Replies::go_on(out)
            }
            (CommandBody::Noop, _) => Replies::go_on(vec![ok(&tag, "NOOP done")]),
            (CommandBody::Logout, _) => Replies {
                out: vec![Out::Status(reply::bye("postcast IMAP logging out")), ok(&tag, "LOGOUT done")],
                then: Then::Close,
            },
            (CommandBody::Id { .. }, _) => Replies::go_on(vec![Out::Data(id_data()), ok(&tag, "ID done")]),
            (CommandBody::StartTLS, State::NotAuthenticated) if self.settings.starttls && !self.tls => {
                Replies { out: vec![ok(&tag, "Begin TLS negotiation now")], then: Then::StartTls }
            }
            (CommandBody::StartTLS, _) => Replies::go_on(vec![bad(&tag, "STARTTLS is not available now")]),
            (CommandBody::Login { username, password }, State::NotAuthenticated) => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                Replies::go_on(vec![self.login(&tag, &user, &password).await])
            }
            (body, State::NotAuthenticated) => {
                Replies::go_on(vec![bad(&tag, &format!("{} needs you to log in first", body.name()))])
            }
            (CommandBody::Login { .. }, _) => Replies::go_on(vec![bad(&tag, "You are logged in already")]),
            (body, _) => Replies::go_on(self.logged_in(&tag, body).await),
        }
    }

    /// Commands of the authenticated and selected states.
    async fn logged_in(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> Vec<Out> {
        let selected = matches!(self.state, State::Selected(..));
        match body {
            CommandBody::Enable { .. } => {
                // RFC 5161: nothing we could enable is offered yet, so nothing is enabled.
                vec![Out::Data(Data::Enabled { capabilities: Vec::new() }), ok(tag, "ENABLE done")]
            }
            CommandBody::Namespace => vec![super::cmd::mailboxes::namespace(), ok(tag, "NAMESPACE done")],
            CommandBody::List { reference, mailbox_wildcard } => {
                self.list(tag, &reference, &mailbox_wildcard, false).await
            }
            CommandBody::Lsub { reference, mailbox_wildcard } => {
                self.list(tag, &reference, &mailbox_wildcard, true).await
            }
            CommandBody::Status { mailbox, item_names } => self.status(tag, &mailbox, &item_names).await,
            CommandBody::Create { mailbox } => self.create(tag, &mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(tag, &mailbox).await,
            CommandBody::Rename { from, to } => self.rename(tag, &from, &to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(tag, &mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(tag, &mailbox, false).await,
            CommandBody::Select { mailbox } => self.select(tag, &mailbox, false).await,
            CommandBody::Examine { mailbox } => self.select(tag, &mailbox, true).await,
            CommandBody::Append { mailbox, flags, date, message } => {
                self.append(tag, &mailbox, &flags, date, message).await
            }
            CommandBody::Copy { sequence_set, mailbox, uid } if selected => {
                self.copy(tag, &sequence_set, &mailbox, uid).await
            }
            CommandBody::Search { .. } => {
                vec![no_code(tag, "CANNOT", &format!("{} is not supported yet", body.name()))]
            }
            CommandBody::Close | CommandBody::Unselect if selected => self.close(tag, body).await,
            CommandBody::Expunge if selected => self.expunge(tag).await,
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid } if selected => {
                self.fetch(tag, &sequence_set, macro_or_item_names, uid).await
            }
            CommandBody::Store { sequence_set, kind, response, flags, uid } if selected => {
                self.store(tag, &sequence_set, kind, response, &flags, uid).await
            }
            CommandBody::Check
            | CommandBody::Copy { .. }
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Expunge
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. } => vec![bad(tag, &format!("{} needs a selected mailbox", body.name()))],
            other => vec![bad(tag, &format!("{} is not supported yet", other.name()))],
        }
    }

    /// The id of the logged-in account, if any.
    pub(super) fn account(&self) -> Option<i64> {
        match &self.state {
            State::NotAuthenticated => None,
            State::Authenticated(a) | State::Selected(a, _) => Some(a.id),
        }
    }

    /// LOGIN (RFC 9051 §6.2.3) with the same checks and throttling as SMTP AUTH.
    async fn login(&mut self, tag: &Tag<'static>, username: &str, password: &str) -> Out {
        if !self.login_allowed() {
            // RFC 5530: PRIVACYREQUIRED.
            return no_code(tag, "PRIVACYREQUIRED", "Log in only after STARTTLS, or on the implicit-TLS port");
        }
        let client = ClientInfo { ip: self.peer, user_agent: "imap".into() };
        let result = self.auth.verify_client_password(username, password, &client).await;
        let (outcome, answer) = match result {
            Ok(user) => {
                tracing::info!(user = %user.username, "imap login");
                self.state = State::Authenticated(Account { id: user.id });
                let code = Some(Code::Capability(self.capabilities()));
                ("ok", tagged(tag, StatusKind::Ok, code, "Logged in"))
            }
            // Throttled or banned network, or every hashing slot busy (RFC 5530 UNAVAILABLE).
            Err(AuthError::Busy(_) | AuthError::RateLimited(_)) => {
                ("try_later", no_code(tag, "UNAVAILABLE", "Too many attempts or too busy; try again later"))
            }
            Err(AuthError::InvalidCredentials | AuthError::Disabled) => {
                ("failed", no_code(tag, "AUTHENTICATIONFAILED", "Invalid credentials"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "imap login could not be checked");
                ("failed", no_code(tag, "AUTHENTICATIONFAILED", "Invalid credentials"))
            }
        };
        metrics::counter!("postcast_imap_auth_total", "result" => outcome).increment(1);
        if outcome != "ok" {
            tracing::info!(user = ?username, result = outcome, "imap login refused");
        }
        answer
    }

    /// The first step of AUTHENTICATE (RFC 9051 §6.2.2; PLAIN, RFC 4616; SASL-IR, RFC 4959).
    pub async fn authenticate_start(
        &mut self,
        tag: Tag<'static>,
        mechanism: AuthMechanism<'static>,
        initial: Option<Secret<std::borrow::Cow<'static, [u8]>>>,
    ) -> AuthStep {
        if !matches!(self.state, State::NotAuthenticated) {
            return AuthStep::Done(bad(&tag, "You are logged in already"));
        }
        if mechanism != AuthMechanism::Plain {
            return AuthStep::Done(no(&tag, "Only AUTHENTICATE PLAIN is offered"));
        }
        if !self.login_allowed() {
            return AuthStep::Done(no_code(&tag, "PRIVACYREQUIRED", "Log in only after STARTTLS"));
        }
        match initial {
            Some(data) => AuthStep::Done(self.plain(&tag, data.declassify()).await),
            None => {
                self.authenticating = Some(tag);
                AuthStep::Challenge
            }
        }
    }

    /// The client's response to the AUTHENTICATE challenge: the final status.
    pub async fn authenticate_data(&mut self, data: AuthenticateData<'static>) -> Out {
        let tag = self.authenticating.take().unwrap_or_else(|| Tag::unvalidated("*"));
        match data {
            AuthenticateData::Continue(data) => self.plain(&tag, data.declassify()).await,
            AuthenticateData::Cancel => bad(&tag, "AUTHENTICATE cancelled"),
        }
    }

    /// Checks a PLAIN response: `authzid NUL authcid NUL password` (RFC 4616 §2); an
    /// authorisation identity other than the user's own is refused.
    async fn plain(&mut self, tag: &Tag<'static>, response: &[u8]) -> Out {
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return bad(tag, "Malformed PLAIN response");
        };
        let (Ok(authz), Ok(user), Ok(password)) =
            (std::str::from_utf8(authz), std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return no_code(tag, "AUTHENTICATIONFAILED", "Invalid credentials");
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            return no_code(tag, "AUTHORIZATIONFAILED", "You may act only as yourself");
        }
        let (user, password) = (user.to_owned(), password.to_owned());
        self.login(tag, &user, &password).await
    }
}

/// The server's `* ID` answer (RFC 2971).
fn id_data() -> Data<'static> {
    let parameters = [("name", "postcast"), ("version", env!("CARGO_PKG_VERSION"))]
        .into_iter()
        .filter_map(|(k, v)| Some((IString::try_from(k).ok()?, NString::try_from(v).ok()?)))
        .collect();
    Data::Id { parameters: Some(parameters) }
}
