//! The web UI in a real browser: starts the real server, then runs the Playwright script
//! `tests/ui/account.mjs` (headless Debian Chromium through `playwright-core`) against it.
//! It also checks over plain HTTP that the UI's files are served with the right types,
//! caching and status codes.
//!
//! Needs Node.js, `npm ci` (for `node_modules/playwright-core`) and `/usr/bin/chromium`
//! (`apt-get install -y chromium`). When one is missing the test fails and says what to
//! install: it never skips, so CI cannot pass without the browser test.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::Server;

const CHROMIUM: &str = "/usr/bin/chromium";

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

#[test]
fn account_pages_work_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_browser_tools(root);
    let server = Server::start();
    let base = server.url("");
    let started = Instant::now();
    let out = Command::new("node")
        .arg("tests/ui/account.mjs")
        .arg(&base)
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

    for path in ["/", "/login", "/register", "/security", "/app-passwords", "/sessions", "/security-log", "/profile", "/preferences"] {
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
