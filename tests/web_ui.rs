//! The web UI in a real browser: starts the real server (with a loopback fake SMS
//! gateway standing in for the webhook provider), then runs the Playwright script
//! `tests/ui/account.mjs` (headless Debian Chromium through `playwright-core`) against it.
//! It also checks over plain HTTP that the UI's files are served with the right types,
//! caching and status codes.
//!
//! Needs Node.js, `npm ci` (for `node_modules/playwright-core`) and `/usr/bin/chromium`
//! (`apt-get install -y chromium`). When one is missing the test fails and says what to
//! install: it never skips, so CI cannot pass without the browser test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The clean URLs of the UI's pages.
const PAGES: [&str; 9] = [
    "/",
    "/login",
    "/register",
    "/security",
    "/app-passwords",
    "/sessions",
    "/security-log",
    "/profile",
    "/preferences",
];

/// Panics with an install hint unless Node.js, playwright-core and Chromium are present.
fn require_browser_tools(root: &Path) {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => panic!("the web UI test needs Node.js 20 or later on PATH (`node`); install it, then run `npm ci`"),
    }
    let pw = root.join("node_modules/playwright-core/package.json");
    assert!(
        pw.is_file(),
        "the web UI test needs playwright-core: run `npm ci` in {} (missing {})",
        root.display(),
        pw.display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "the web UI test needs Chromium at {CHROMIUM}: run `apt-get install -y chromium`"
    );
}

/// A fake SMS gateway on `127.0.0.1:0`: every POST body (`{"to","text"}` from the
/// webhook provider) is kept, and `GET /messages` answers them as a JSON array, so the
/// browser script can read the codes the server sent.
fn fake_sms_gateway() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake SMS gateway");
    let addr = listener.local_addr().expect("gateway address");
    let messages: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let messages = Arc::clone(&messages);
            std::thread::spawn(move || {
                let _ = answer_gateway_request(stream, &messages);
            });
        }
    });
    format!("http://{addr}")
}

/// Reads one HTTP/1.1 request and answers it, closing the connection.
fn answer_gateway_request(stream: TcpStream, messages: &Mutex<Vec<serde_json::Value>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let reply = if request_line.starts_with("POST ") {
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        messages.lock().unwrap().push(value);
        "{}".to_owned()
    } else {
        serde_json::to_string(&*messages.lock().unwrap()).unwrap()
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

#[test]
fn account_pages_work_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_browser_tools(root);
    let sms = fake_sms_gateway();
    let server = Server::start_with(&format!(
        "[sms]\nprovider = \"webhook\"\nwebhook_url = \"{sms}/send\"\nresend_interval_seconds = 0\n"
    ));
    let base = server.url("");
    let started = Instant::now();
    let out = Command::new("node")
        .arg("tests/ui/account.mjs")
        .arg(&base)
        .arg(&sms)
        .current_dir(root)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/ui/account.mjs failed ({}) after {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status,
        started.elapsed().as_secs_f64()
    );
    print!("{stdout}");
}

#[tokio::test]
async fn ui_files_are_served_with_types_caching_and_404() {
    let server = Server::start();
    let c = server.client();
    let get = |path: &str| c.get(server.url(path)).send();

    for path in PAGES {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert!(r.text().await.unwrap().starts_with("<!doctype html>"), "{path}");
    }

    let css = get("/css/app.css").await.unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.headers()["cache-control"].to_str().unwrap().contains("max-age="));

    let js = get("/js/app.js").await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");

    let svg = get("/favicon.svg").await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml; charset=utf-8");

    for path in ["/nope", "/js/nope.js", "/js/../Cargo.toml", "/.env"] {
        assert_eq!(get(path).await.unwrap().status(), 404, "{path}");
    }
}
