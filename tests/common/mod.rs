//! Test harness: runs the real `postcast` binary on ephemeral loopback ports with a
//! temporary data folder, and speaks HTTP to it with reqwest.
#![allow(dead_code)]

pub mod dns;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub http: SocketAddr,
    pub rtmp: Option<SocketAddr>,
    /// The inbound (MX) SMTP door.
    pub smtp: Option<SocketAddr>,
    /// The submission door (STARTTLS).
    pub submission: Option<SocketAddr>,
    /// The submissions door (implicit TLS).
    pub submissions: Option<SocketAddr>,
    /// The IMAP door (STARTTLS).
    pub imap: SocketAddr,
    /// The IMAP door over implicit TLS.
    pub imaps: SocketAddr,
    pub data: tempfile::TempDir,
    pub config_path: Option<PathBuf>,
    /// What the server printed at start, up to and with its `Ready in` line.
    pub banner: String,
}

impl Server {
    /// Starts with the defaults.
    pub fn start() -> Server {
        Self::start_with("")
    }

    /// Starts with extra `config.toml` text.
    pub fn start_with(config: &str) -> Server {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(data, config)
    }

    /// Starts on an existing data folder (a restart).
    pub fn start_in(data: tempfile::TempDir, config: &str) -> Server {
        Self::start_on(data, config, None)
    }

    /// Starts with the inbound SMTP door on `smtp` (for servers that must know each
    /// other's port before they start); every other door on an ephemeral port. Tests
    /// register several accounts, so registration is open unless `config` sets
    /// `auth.open_registration` itself.
    pub fn start_on(data: tempfile::TempDir, config: &str, smtp: Option<SocketAddr>) -> Server {
        Self::start_full(data, config, smtp, false)
    }

    /// Starts with extra `config.toml` text, its log (stderr) written to [`Server::log`]
    /// instead of the test's output.
    pub fn start_logged(config: &str) -> Server {
        Self::start_full(tempfile::tempdir().unwrap(), config, None, true)
    }

    /// What a server started with [`Server::start_logged`] has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn start_full(data: tempfile::TempDir, config: &str, smtp: Option<SocketAddr>, logged: bool) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postcast"));
        let p = data.path().join("test-config.toml");
        std::fs::write(&p, with_open_registration(config)).unwrap();
        cmd.arg("--config").arg(&p);
        let config_path = Some(p);
        let ready = data.path().join("ready.json");
        let _ = std::fs::remove_file(&ready);
        cmd.arg("serve")
            .arg("--ready-file")
            .arg(&ready)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--rtmp")
            .arg("127.0.0.1:0")
            .args(["--smtp", &smtp.map_or("127.0.0.1:0".to_string(), |a| a.to_string())])
            .args(["--submission", "127.0.0.1:0", "--submissions", "127.0.0.1:0"])
            .args(["--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,postcast=info")
            .stdout(Stdio::piped())
            .stderr(if logged {
                Stdio::from(std::fs::File::create(data.path().join("server.log")).unwrap())
            } else {
                Stdio::inherit()
            });
        let mut child = cmd.spawn().expect("spawn postcast");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // The banner's last line comes after the ready file is written.
        let mut banner = String::new();
        loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Ready in ") {
                break;
            }
        }
        let bound: Value = serde_json::from_slice(&std::fs::read(&ready).expect("ready file")).unwrap();
        let addr = |door: &str| -> SocketAddr { bound[door].as_str().expect(door).parse().unwrap() };
        let (http, rtmp, smtp) = (addr("http"), Some(addr("rtmp")), Some(addr("smtp")));
        let (submission, submissions) = (Some(addr("submission")), Some(addr("submissions")));
        let (imap, imaps) = (addr("imap"), addr("imaps"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, http, rtmp, smtp, submission, submissions, imap, imaps, data, config_path, banner }
    }

    /// `http://ADDR` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// A client that sends `token` as a Bearer token with every request.
    pub fn user(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    }

    /// A free loopback port (bound and released; for servers started with [`Server::start_on`]).
    pub fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    /// A client without cookies.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().build().unwrap()
    }

    /// Stops the server and hands back its data folder for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data, dir)
    }

    /// Registers `name` with `password` and logs in; returns the session token.
    pub async fn register_and_login(&self, name: &str, password: &str) -> String {
        let c = self.client();
        let r = c
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "register {name}: {} {}", r.status(), r.text().await.unwrap());
        self.login(name, password).await
    }

    /// Confirms the password for the session of `token` (`POST /api/v1/auth/reauth`), as
    /// sensitive changes need within ten minutes.
    pub async fn reauth(&self, token: &str, password: &str) {
        let r = self
            .client()
            .post(self.url("/api/v1/auth/reauth"))
            .bearer_auth(token)
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "reauth");
    }

    /// Logs in with a password only; returns the session token.
    pub async fn login(&self, name: &str, password: &str) -> String {
        let r = self
            .client()
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {name}");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().expect("token in login answer").to_owned()
    }
}

/// `config` with `auth.open_registration = true` added unless it sets that key.
pub fn with_open_registration(config: &str) -> String {
    let mut doc: toml::Table = config.parse().expect("the test's config is TOML");
    let auth = doc.entry("auth").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    auth.as_table_mut().expect("[auth] is a table").entry("open_registration").or_insert(true.into());
    toml::to_string(&doc).expect("the test's config serialises")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request builder with the bearer token set.
pub fn authed(c: &reqwest::Client, method: reqwest::Method, url: String, token: &str) -> reqwest::RequestBuilder {
    c.request(method, url).bearer_auth(token)
}

/// The password every test account gets.
pub const PW: &str = "correct horse battery";

/// A registered, logged-in account speaking to a [`Server`].
pub struct User<'a> {
    pub server: &'a Server,
    pub client: reqwest::Client,
    pub token: String,
}

impl<'a> User<'a> {
    /// Registers `name` (password [`PW`]) and logs in.
    pub async fn new(server: &'a Server, name: &str) -> User<'a> {
        let token = server.register_and_login(name, PW).await;
        User { server, client: server.client(), token }
    }

    /// A request to `path` with this user's token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        authed(&self.client, method, self.server.url(path), &self.token)
    }

    /// Sends `body` as JSON (if any); returns the status and the JSON answer (or its text).
    pub async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (reqwest::StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Like [`User::json`], asserting a 2xx answer.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.json(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }
}

/// Runs the `postcast` command line on the data folder `data`, with `stdin` as input.
pub fn postcast_cli(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_postcast"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A command's stdout and stderr as one text.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs Debian's swaks against `addr` (EHLO `client.test`, a 20 s timeout) with `args`;
/// returns whether it succeeded and its whole transcript.
pub fn swaks(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--server", &addr.ip().to_string(), "--port", &addr.port().to_string(), "--helo", "client.test"])
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks is installed (apt-get install swaks)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
