//! The IMAP door through the real binary: Python's `imaplib` (standard library) logs in
//! over STARTTLS and implicit TLS, lists, selects, fetches, stores and expunges mail
//! delivered over SMTP, and the web API sees the same flags; a raw socket sends garbage,
//! overlong lines and unsupported commands.

mod common;

use std::process::Command;

use common::{PW, Server, User, swaks};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What every script starts with: connect helpers that trust the self-signed certificate.
const PRELUDE: &str = r#"
import imaplib, os, ssl, sys
HOST = "127.0.0.1"
PORT, PORTS = int(os.environ["IMAP_PORT"]), int(os.environ["IMAPS_PORT"])
USER, PASS = os.environ["IMAP_USER"], os.environ["IMAP_PASS"]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def starttls():
    m = imaplib.IMAP4(HOST, PORT)
    m.starttls(ssl_context=ctx)
    return m
def implicit():
    return imaplib.IMAP4_SSL(HOST, PORTS, ssl_context=ctx)
def ok(result):
    typ, data = result
    assert typ == "OK", (typ, data)
    return data
"#;

/// Runs `script` (after [`PRELUDE`]) as `user`; panics with its output if it fails;
/// returns what it printed.
fn python(server: &Server, user: &str, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .env("IMAP_PORT", server.imap.port().to_string())
        .env("IMAPS_PORT", server.imaps.port().to_string())
        .env("IMAP_USER", user)
        .env("IMAP_PASS", PW)
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the imaplib script failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Delivers a message to `to` over inbound SMTP.
fn deliver(server: &Server, to: &str, subject: &str, body: &str) {
    let smtp = server.smtp.expect("smtp door");
    let (ok, t) = swaks(
        smtp,
        &["--from", "anna@example.com", "--to", to, "--header", &format!("Subject: {subject}"), "--body", body],
    );
    assert!(ok, "{t}");
}

/// The user's Inbox as the web API lists it.
async fn api_messages(user: &User<'_>) -> Vec<Value> {
    mailbox_messages(user, "role", "inbox").await
}

/// The messages, as the web API lists them, of the user's mailbox whose `key` (`role` or
/// `name`) is `value`.
async fn mailbox_messages(user: &User<'_>, key: &str, value: &str) -> Vec<Value> {
    let boxes = user.ok(Method::GET, "/api/v1/mail/mailboxes", None).await;
    let mailbox = boxes.as_array().unwrap().iter().find(|b| b[key] == value).unwrap()["id"].clone();
    let page = user.ok(Method::GET, &format!("/api/v1/mail/messages?mailbox={mailbox}"), None).await;
    page["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn login_over_starttls_and_implicit_tls_and_list_the_special_use_mailboxes() {
    let server = Server::start();
    let _ada = User::new(&server, "ada").await;
    let out = python(
        &server,
        "ada",
        r#"
m = imaplib.IMAP4(HOST, PORT)
caps = ok(m.capability())[0].decode()
assert "STARTTLS" in caps and "AUTH=PLAIN" in caps and "SPECIAL-USE" in caps, caps
m.starttls(ssl_context=ctx)
ok(m.login(USER, PASS))
boxes = [l.decode() for l in ok(m.list())]
print("\n".join(boxes))
ok(m.create("Work/Projects"))
ok(m.create("Entw&APw-rfe-2"))
tree = [l.decode() for l in ok(m.list('""', "%"))]
assert any(l.endswith('"/" Work') and "\\HasChildren" in l and "\\Noselect" in l for l in tree), tree
assert any("Entw&APw-rfe-2" in l for l in tree), tree
ok(m.rename("Work/Projects", "Work/Done"))
assert any(l.endswith("Work/Done") for l in [x.decode() for x in ok(m.list('""', "Work/*"))])
ok(m.unsubscribe("Work/Done"))
assert not any(b"Work/Done" in l for l in ok(m.lsub()) if l)
typ, _ = m.create("INBOX")
assert typ == "NO", typ
typ, _ = m.delete("Sent")
assert typ == "NO", "system mailboxes stay"
ok(m.delete("Work/Done"))
status = ok(m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"))[0].decode()
assert "MESSAGES 0" in status and "UNSEEN 0" in status and "UIDNEXT" in status, status
print(ok(m.namespace())[0].decode())
print(ok(m.xatom("ID", "NIL"))[0])
m.logout()

s = implicit()
assert "LOGINDISABLED" not in s.capabilities
ok(s.login(USER + "@localhost", PASS))
ok(s.select("INBOX"))
s.logout()
bad = implicit()
try:
    bad.login(USER, "wrong password!")
    raise SystemExit("a wrong password logged in")
except imaplib.IMAP4.error as e:
    print("refused:", e)
"#,
    );
    for line in [
        r#"(\HasNoChildren) "/" INBOX"#,
        r#"(\Sent \HasNoChildren) "/" Sent"#,
        r#"(\Drafts \HasNoChildren) "/" Drafts"#,
        r#"(\Junk \HasNoChildren) "/" Spam"#,
        r#"(\Trash \HasNoChildren) "/" Trash"#,
        r#"(\Archive \HasNoChildren) "/" Archive"#,
    ] {
        assert!(out.lines().any(|l| l == line), "LIST lacks {line}:\n{out}");
    }
    assert!(out.contains(r#"(("" "/")) NIL NIL"#), "NAMESPACE: {out}");
    assert!(out.contains("AUTHENTICATIONFAILED"), "{out}");
    assert!(server.banner.contains(&format!("imap://{}", server.imap)), "{}", server.banner);
    assert!(server.banner.contains(&format!("imaps://{}", server.imaps)), "{}", server.banner);
}

#[tokio::test]
async fn delivered_mail_is_fetched_flagged_in_both_directions_and_expunged() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    deliver(&server, "ada@localhost", "Quarterly figures", "Line one\nLine two");
    let listed = api_messages(&ada).await;
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_i64().unwrap();
    let raw = ada.req(Method::GET, &format!("/api/v1/mail/messages/{id}/raw")).send().await.unwrap();
    let raw = raw.bytes().await.unwrap();
    std::fs::write(server.data.path().join("expected.eml"), &raw).unwrap();

    let out = python(
        &server,
        "ada",
        &format!(
            r#"
expected = open({path:?}, "rb").read()
m = starttls()
ok(m.login(USER, PASS))
assert ok(m.select("INBOX")) == [b"1"]
data = ok(m.fetch("1", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])"))
meta, body = data[0]
meta = meta.decode()
assert body == expected, (body, expected)
assert "RFC822.SIZE %d" % len(expected) in meta, meta
assert '"Quarterly figures"' in meta and '"anna" "example.com"' in meta, meta
assert "FLAGS ()" in meta, "PEEK leaves it unread: " + meta
head = ok(m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))[0][1]
assert head == b"Subject: Quarterly figures\r\n\r\n", head
part = ok(m.fetch("1", "(BODY.PEEK[TEXT]<0.8>)"))[0]
assert b"BODY[TEXT]<0>" in part[0] and part[1] == b"Line one", part
ok(m.store("1", "+FLAGS", "(\\Seen)"))
m.logout()
"#,
            path = server.data.path().join("expected.eml").display().to_string()
        ),
    );
    let listed = api_messages(&ada).await;
    assert_eq!((listed[0]["seen"].as_bool(), listed[0]["starred"].as_bool()), (Some(true), Some(false)), "{out}");
    ada.ok(Method::PATCH, &format!("/api/v1/mail/messages/{id}"), Some(json!({"starred": true}))).await;
    python(
        &server,
        "ada",
        r#"
m = starttls()
ok(m.login(USER, PASS))
ok(m.select("INBOX"))
flags = ok(m.fetch("1", "(FLAGS)"))[0].decode()
assert "\\Flagged" in flags and "\\Seen" in flags, flags
ok(m.store("1", "-FLAGS.SILENT", "(\\Seen)"))
text = ok(m.fetch("1", "(BODY[TEXT])"))
assert text[0][1].startswith(b"Line one") and b"\\Seen" in text[1], "BODY[] without PEEK sets \\Seen: %r" % (text,)
ok(m.store("1", "+FLAGS", "(\\Deleted)"))
typ, gone = m.expunge()
assert typ == "OK" and gone == [b"1"], gone
assert ok(m.select("INBOX")) == [b"0"]
m.logout()
"#,
    );
    assert!(api_messages(&ada).await.is_empty(), "EXPUNGE deleted it");
}

#[tokio::test]
async fn another_user_cannot_see_or_touch_the_first_users_mail() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let _bob = User::new(&server, "bob").await;
    deliver(&server, "ada@localhost", "Private", "for ada only");
    let ada_uid = {
        let out = python(
            &server,
            "ada",
            "m = starttls(); ok(m.login(USER, PASS)); ok(m.select('INBOX')); ok(m.create('Secret'))\nprint(ok(m.fetch('1', '(UID)'))[0].decode())",
        );
        out.split("UID ").nth(1).and_then(|s| s.trim().trim_end_matches(')').parse::<u32>().ok()).expect("a UID")
    };
    python(
        &server,
        "bob",
        &format!(
            r#"
m = starttls()
ok(m.login(USER, PASS))
assert ok(m.select("INBOX")) == [b"0"], "bob's INBOX is his own"
assert ok(m.uid("FETCH", "{ada_uid}", "(BODY.PEEK[])")) == [None]
ok(m.uid("STORE", "{ada_uid}", "+FLAGS", "(\\Deleted)"))
ok(m.expunge())
typ, _ = m.select("Secret")
assert typ == "NO", "ada's mailbox is not bob's"
assert not any(b"Secret" in l for l in ok(m.list()))
typ, _ = m.status("Secret", "(MESSAGES)")
assert typ == "NO"
typ, _ = m.delete("Secret")
assert typ == "NO"
m.logout()
"#
        ),
    );
    let listed = api_messages(&ada).await;
    assert_eq!(listed.len(), 1, "ada's message is still there");
    assert_eq!(listed[0]["seen"].as_bool(), Some(false));
}

#[tokio::test]
async fn without_trusted_loopback_login_waits_for_tls() {
    let server = Server::start_with("[imap]\nplaintext_login_on_loopback = false\n");
    let _ada = User::new(&server, "ada").await;
    python(
        &server,
        "ada",
        r#"
m = imaplib.IMAP4(HOST, PORT)
assert "LOGINDISABLED" in m.capabilities and "AUTH=PLAIN" not in m.capabilities, m.capabilities
try:
    m.login(USER, PASS)
    raise SystemExit("LOGIN worked without TLS")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl_context=ctx)
caps = ok(m.capability())[0].decode()
assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
ok(m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (USER, PASS)).encode()))
ok(m.select("INBOX"))
m.logout()
"#,
    );
}

/// A raw IMAP connection.
struct Raw {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.imap).await.unwrap();
        let (r, w) = tokio::io::split(stream);
        let mut raw = Raw { reader: BufReader::new(r), writer: w };
        let greeting = raw.line().await;
        assert!(greeting.starts_with("* OK [CAPABILITY IMAP4REV1 "), "{greeting}");
        raw
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), self.reader.read_line(&mut line));
        read.await.expect("an answer in time").unwrap();
        line
    }

    /// Sends `bytes`; returns every line up to the one starting with `tag `.
    async fn send(&mut self, bytes: &[u8], tag: &str) -> Vec<String> {
        self.writer.write_all(bytes).await.unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            assert!(!line.is_empty(), "closed after {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

#[tokio::test]
async fn garbage_overlong_lines_and_unsupported_commands_get_bad_and_the_session_goes_on() {
    let server = Server::start();
    let _ada = User::new(&server, "ada").await;
    let mut c = Raw::connect(&server).await;
    assert!(c.send(b"a1 FROBNICATE now\r\n", "a1").await.last().unwrap().starts_with("a1 BAD"));
    assert!(c.send(b"\x00\xff garbage\r\n", "*").await.last().unwrap().starts_with("* BAD"));
    let mut long = b"a2 LOGIN ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 200_000));
    long.extend_from_slice(b" y\r\n");
    assert_eq!(c.send(&long, "a2").await.last().unwrap().trim_end(), "a2 BAD Command line too long");
    assert!(c.send(b"a3 LOGIN {999999999}\r\n", "a3").await.last().unwrap().starts_with("a3 BAD"));
    assert!(c.send(b"a4 SELECT INBOX\r\n", "a4").await.last().unwrap().starts_with("a4 BAD"), "not logged in");
    assert!(c.send(format!("a5 LOGIN ada \"{PW}\"\r\n").as_bytes(), "a5").await.last().unwrap().starts_with("a5 OK"));
    assert!(c.send(b"a6 FETCH 1 FLAGS\r\n", "a6").await.last().unwrap().starts_with("a6 BAD"), "nothing selected");
    c.send(b"a7 SELECT INBOX\r\n", "a7").await;
    assert!(c.send(b"a8 FETCH 5 FLAGS\r\n", "a8").await.last().unwrap().starts_with("a8 BAD"), "no message 5");
    let search = c.send(b"a9 SEARCH ALL\r\n", "a9").await;
    assert!(search.last().unwrap().contains("NO [CANNOT] SEARCH is not supported yet"), "{search:?}");
    let idle = c.send(b"b1 IDLE\r\n", "b1").await;
    assert!(idle.last().unwrap().starts_with("b1 BAD"), "{idle:?}");
    assert!(c.send(b"b2 FETCH 1:* (BODYSTRUCTURE)\r\n", "b2").await.last().unwrap().contains("not supported yet"));
    let noop = c.send(b"b3 NOOP\r\n", "b3").await;
    assert_eq!(noop.last().unwrap().trim_end(), "b3 OK NOOP done");
    let bye = c.send(b"b4 LOGOUT\r\n", "b4").await;
    assert!(bye[0].starts_with("* BYE"), "{bye:?}");
    let health = server.client().get(server.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success(), "the server is still up");
}

#[tokio::test]
async fn append_stores_with_flags_and_date_in_the_users_own_mailboxes() {
    let server = Server::start_with("[quota]\nstorage_mb = 1\n");
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    python(
        &server,
        "ada",
        r#"
msg = b"From: ada@localhost\r\nTo: carl@example.com\r\nSubject: Kept copy\r\n\r\nWritten elsewhere.\r\n"
m = starttls()
ok(m.login(USER, PASS))
ok(m.select("Sent"))
when = imaplib.Time2Internaldate(1780000000)
ok(m.append("Sent", "(\\Seen \\Flagged)", when, msg))
# The selected mailbox hears of it: a NOOP is not needed to see it.
typ, exists = m.response("EXISTS")
assert exists[-1] == b"1", exists
meta, body = ok(m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])"))[0]
assert body == msg, body
assert b"\\Seen" in meta and b"\\Flagged" in meta, meta
assert b'INTERNALDATE "28-May-2026 20:26:40 +0000"' in meta, meta
typ, data = m.append("\"No such box\"", None, None, msg)
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
typ, data = m.append("Sent", None, None, b"x" * 1100000)
assert typ == "NO" and b"OVERQUOTA" in data[0], (typ, data)
m.logout()
"#,
    );
    let listed = mailbox_messages(&ada, "role", "sent").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0]["subject"].as_str(), listed[0]["starred"].as_bool()), (Some("Kept copy"), Some(true)));
    // A mailbox only ada has is not bob's to append to; his own of that name is.
    ada.ok(Method::POST, "/api/v1/mail/mailboxes", Some(json!({"name": "Projects"}))).await;
    python(
        &server,
        "bob",
        r#"
m = starttls()
ok(m.login(USER, PASS))
typ, data = m.append("Projects", None, None, b"Subject: bob's\r\n\r\nhi\r\n")
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
ok(m.create("Projects"))
typ, data = m.append("Projects", None, None, b"Subject: bob's\r\n\r\nhi\r\n")
assert typ == "OK", (typ, data)
m.logout()
"#,
    );
    assert!(mailbox_messages(&ada, "name", "Projects").await.is_empty(), "ada's Projects got nothing");
    assert_eq!(mailbox_messages(&bob, "name", "Projects").await.len(), 1);
}

#[tokio::test]
async fn copy_puts_flagged_copies_in_another_mailbox_all_at_once() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    deliver(&server, "ada@localhost", "First", "one");
    deliver(&server, "ada@localhost", "Second", "two");
    python(
        &server,
        "ada",
        r#"
m = starttls()
ok(m.login(USER, PASS))
ok(m.create("Projects"))
assert ok(m.select("INBOX")) == [b"2"]
ok(m.store("2", "+FLAGS", "(\\Flagged)"))
ok(m.copy("1:2", "Projects"))
typ, data = m.copy("1", '"Nowhere at all"')
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
typ, data = m.uid("COPY", "99", "Projects")
assert typ == "OK", (typ, data)
ok(m.copy("1", "INBOX"))
typ, exists = m.response("EXISTS")
assert exists[-1] == b"3", exists
assert ok(m.select("Projects")) == [b"2"]
flags = b" ".join(x for x in ok(m.fetch("1:2", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")) if isinstance(x, tuple) for x in x)
assert b"Subject: First" in flags and b"Subject: Second" in flags, flags
second = ok(m.fetch("2", "(FLAGS)"))[0]
assert b"\\Flagged" in second, second
m.logout()
"#,
    );
    let projects = mailbox_messages(&ada, "name", "Projects").await;
    assert_eq!(projects.len(), 2, "{projects:?}");
    assert_eq!(api_messages(&ada).await.len(), 3, "the originals stay, plus the copy into INBOX");
}
