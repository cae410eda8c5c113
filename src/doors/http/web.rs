//! The web UI: the files under `static/`, embedded in the binary with rust-embed and
//! served as they are. `/` is `index.html`, a clean page URL such as `/login` is
//! `login.html`, anything else is looked up by its path and answers 404 when absent.
//! HTML is sent with `Cache-Control: no-cache` (always revalidated through its `ETag`),
//! stylesheets, scripts and images with a short cache. This module only serves files:
//! it holds no business rule and never reads request data beyond the path and
//! `If-None-Match`; the Content-Security-Policy comes from the door's shared
//! security-headers layer.
//!
//! Browser libraries from the npm registry (`package.json`, installed by `npm ci`) are
//! served under `/vendor/`: today `hls.min.js` from hls.js, which `build.rs` copies from
//! `node_modules/` into the build. When it was not installed before the build, the binary
//! still works and `/vendor/hls.min.js` answers 404 with a hint in the log.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The files of the web UI, taken from `static/` at build time.
#[derive(rust_embed::Embed)]
#[folder = "static/"]
pub struct Assets;

/// How long browsers may keep stylesheets, scripts and images without asking again.
const SHORT_CACHE: &str = "public, max-age=300";

/// hls.js's `hls.min.js` as installed by `npm ci`; empty when it was missing at build time.
const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vendor/hls.min.js"));

/// The `ETag` of [`HLS_JS`], computed once.
static HLS_JS_ETAG: LazyLock<String> = LazyLock::new(|| etag_of(HLS_JS));

/// The routes of the web UI: `/` and every path not claimed by another route.
pub fn routes() -> Router<super::HttpState> {
    router()
}

/// The same routes for any state, so they can be tested without the services.
fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("", &headers) }))
        .route(
            "/vendor/hls.min.js",
            get(|headers: HeaderMap| async move { serve_vendor(HLS_JS, &HLS_JS_ETAG, "hls.js", &headers) }),
        )
        .route("/{*path}", get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }))
}

/// Answers one request for `path` (without its leading `/`).
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(name) = resolve(path) else {
        return not_found();
    };
    let Some(file) = Assets::get(&name) else {
        return not_found();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let is_html = name.ends_with(".html");
    let cache = if is_html { "no-cache" } else { SHORT_CACHE };
    let content_type = content_type(&name, file.metadata.mimetype());
    send(file.data, content_type, cache, &etag, headers)
}

/// Answers a browser library embedded from `node_modules/`, or 404 when the build had
/// none (`package` names the npm package for the hint).
fn serve_vendor(data: &'static [u8], etag: &str, package: &str, headers: &HeaderMap) -> Response {
    if data.is_empty() {
        tracing::warn!(
            package,
            "a browser library was not installed when postcast was built: run `npm ci`, then build again"
        );
        return not_found();
    }
    send(data.into(), content_type(".js", ""), SHORT_CACHE, etag, headers)
}

/// A strong `ETag` for `data`: the first half of its SHA-256, quoted.
fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(data)[..16]))
}

/// Sends `data` with its type, caching and `ETag`, or 304 when the client has it.
fn send(
    data: Cow<'static, [u8]>,
    content_type: HeaderValue,
    cache: &'static str,
    etag: &str,
    headers: &HeaderMap,
) -> Response {
    let mut response = if if_none_match(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Embedded files are `'static`: sent without a copy.
        let mut r = match data {
            Cow::Borrowed(bytes) => bytes.into_response(),
            Cow::Owned(bytes) => bytes.into_response(),
        };
        r.headers_mut().insert(header::CONTENT_TYPE, content_type);
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// Maps a request path to the name of an embedded file, or `None` for a path that can
/// never name one (empty segments, `.`/`..`, backslashes, hidden files).
fn resolve(path: &str) -> Option<String> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Some("index.html".into());
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let sound = path
        .split('/')
        .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains('\\') && !seg.contains('\0'));
    if !sound {
        return None;
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    if last.contains('.') {
        return Some(path.to_owned());
    }
    // A clean page URL: `/login` is `login.html`, `/docs` may be `docs/index.html`.
    let page = format!("{path}.html");
    if Assets::get(&page).is_some() { Some(page) } else { Some(format!("{path}/index.html")) }
}

/// The `Content-Type` of a file: the guessed type, with `charset=utf-8` for text.
fn content_type(name: &str, guessed: &str) -> HeaderValue {
    let mime = match name.rsplit('.').next() {
        Some("js" | "mjs") => "text/javascript",
        Some("svg") => "image/svg+xml",
        _ => guessed,
    };
    let textual = mime.starts_with("text/") || mime == "image/svg+xml" || mime == "application/json";
    let value = if textual { format!("{mime}; charset=utf-8") } else { mime.to_owned() };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// Whether the client's `If-None-Match` already names `etag` (RFC 9110 §13.1.2).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// 404: the embedded `404.html` when there is one, plain text otherwise.
fn not_found() -> Response {
    let mut response = match Assets::get("404.html") {
        Some(file) => {
            let mut r = (StatusCode::NOT_FOUND, file.data.into_owned()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::builder().uri(path);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        router::<()>().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn pages_have_clean_urls_and_are_revalidated() {
        for path in ["/", "/login", "/login.html", "/security", "/preferences/"] {
            let r = get_path(path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), "text/html; charset=utf-8", "{path}");
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache", "{path}");
        }
    }

    #[tokio::test]
    async fn assets_get_their_type_and_a_short_cache() {
        let css = get_path("/css/app.css", None).await;
        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(header_of(&css, header::CONTENT_TYPE), "text/css; charset=utf-8");
        assert_eq!(header_of(&css, header::CACHE_CONTROL), SHORT_CACHE);
        let js = get_path("/js/app.js", None).await;
        assert_eq!(header_of(&js, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert_eq!(header_of(&js, header::CACHE_CONTROL), SHORT_CACHE);
    }

    #[tokio::test]
    async fn a_matching_etag_answers_304() {
        let first = get_path("/login", None).await;
        let etag = header_of(&first, header::ETAG).to_owned();
        assert!(etag.starts_with('"'));
        let again = get_path("/login", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn unknown_and_crooked_paths_are_404() {
        for path in ["/nope", "/nope.css", "/js/../index.html", "/.hidden", "/js//app.js", "/%2e%2e/Cargo.toml"] {
            assert_eq!(get_path(path, None).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    /// hls.js is served from the build when `npm ci` ran before it, and is otherwise a
    /// plain 404 (the crate builds either way).
    #[tokio::test]
    async fn hls_js_is_served_from_the_build_or_404() {
        let r = get_path("/vendor/hls.min.js", None).await;
        if HLS_JS.is_empty() {
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            return;
        }
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_of(&r, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert_eq!(header_of(&r, header::CACHE_CONTROL), SHORT_CACHE);
        let etag = header_of(&r, header::ETAG).to_owned();
        assert_eq!(get_path("/vendor/hls.min.js", Some(&etag)).await.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get_path("/vendor/hls.js", None).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_missing_library_answers_404() {
        assert_eq!(serve_vendor(b"", "\"x\"", "hls.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        let r = serve_vendor(b"// js", "\"x\"", "hls.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// What an HTML tokenizer finds in a page that a strict Content-Security-Policy would
    /// block: `on*` attributes, `style` attributes, `<style>` elements, `<script>` without
    /// `src` or with inline text, and `javascript:` URLs.
    fn csp_breaches(html: &str) -> Vec<String> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{
            BufferQueue, CharacterTokens, TagKind, TagToken, Token, TokenSink, TokenSinkResult, Tokenizer,
        };
        use std::cell::{Cell, RefCell};

        #[derive(Default)]
        struct Finder {
            found: RefCell<Vec<String>>,
            in_script: Cell<bool>,
        }
        impl TokenSink for Finder {
            type Handle = ();
            fn process_token(&self, token: Token, line: u64) -> TokenSinkResult<()> {
                let mut found = self.found.borrow_mut();
                match token {
                    TagToken(tag) if tag.kind == TagKind::StartTag => {
                        let name = tag.name.to_ascii_lowercase();
                        for attr in &tag.attrs {
                            let key = attr.name.local.to_ascii_lowercase();
                            let value = attr.value.trim_start().to_ascii_lowercase();
                            if key.starts_with("on") || &*key == "style" {
                                found.push(format!("line {line}: <{name} {key}=...>"));
                            }
                            if value.replace(['\t', '\n', '\r'], "").starts_with("javascript:") {
                                found.push(format!("line {line}: javascript: URL in {key}"));
                            }
                        }
                        match &*name {
                            "style" => {
                                found.push(format!("line {line}: <style>"));
                                return TokenSinkResult::RawData(RawKind::Rawtext);
                            }
                            "script" => {
                                if !tag.attrs.iter().any(|a| &*a.name.local == "src") {
                                    found.push(format!("line {line}: <script> without src"));
                                }
                                self.in_script.set(true);
                                return TokenSinkResult::RawData(RawKind::ScriptData);
                            }
                            _ => {}
                        }
                    }
                    TagToken(tag) if &*tag.name == "script" => self.in_script.set(false),
                    CharacterTokens(text) if self.in_script.get() && !text.trim().is_empty() => {
                        found.push(format!("line {line}: inline script text"));
                    }
                    _ => {}
                }
                TokenSinkResult::Continue
            }
        }
        let tokenizer = Tokenizer::new(Finder::default(), Default::default());
        let input = BufferQueue::default();
        input.push_back(html.into());
        let _ = tokenizer.feed(&input);
        tokenizer.end();
        tokenizer.sink.found.take()
    }

    #[test]
    fn the_csp_check_finds_what_a_browser_would_run() {
        let page = "<!doctype html><p ONCLICK=x>a</p><a href=' java\tscript:alert(1)'>b</a>\
            <div style='position:fixed'></div><style>p{}</style><script>alert(1)</script>\
            <script src=/js/a.js>alert(2)</script><script src=/js/ok.js></script>";
        let found = csp_breaches(page);
        assert_eq!(found.len(), 7, "{found:#?}");
        assert!(csp_breaches("<!doctype html><script type=module src=/js/app.js></script><a href=/x>y</a>").is_empty());
    }

    /// The server's Content-Security-Policy forbids inline scripts, inline styles and
    /// inline event handlers: every embedded page is tokenized and checked for them. Every
    /// file also says what it is in its first line.
    #[test]
    fn static_files_obey_the_content_security_policy() {
        let mut pages = 0;
        for name in Assets::iter() {
            let Some(file) = Assets::get(&name) else { continue };
            let Ok(text) = std::str::from_utf8(&file.data) else { continue };
            let first = text.trim_start();
            if name.ends_with(".html") {
                pages += 1;
                assert!(first.starts_with("<!doctype html>\n<!--"), "{name}: start with a comment after the doctype");
                let breaches = csp_breaches(text);
                assert!(breaches.is_empty(), "{name}: {breaches:#?}");
            } else if name.ends_with(".js") || name.ends_with(".css") {
                assert!(first.starts_with("/*") || first.starts_with("//"), "{name}: start with a comment");
            } else if name.ends_with(".svg") {
                assert!(first.starts_with("<!--") || first.starts_with("<svg"), "{name}");
            }
        }
        assert!(pages >= 10, "only {pages} embedded pages found");
    }
}
