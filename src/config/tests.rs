//! Tests of the configuration schema against the shipped `config.toml`: it equals the
//! defaults and documents every field, bad values are refused, and every key in it is read
//! into `Config` and used by some code outside the configuration files.

use std::path::{Path, PathBuf};

use super::*;

/// The shipped file.
const SHIPPED: &str = include_str!("../../config.toml");

/// Keys documented in `config.toml` as reserved: accepted and checked, read by no code yet.
const RESERVED: &[&str] = &[];

#[test]
fn shipped_config_toml_matches_the_defaults() {
    let shipped = Config::parse(SHIPPED).expect("config.toml parses");
    let defaults = Config::default();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    assert!(Config::parse("[server]\nnope = 1\n").is_err());
    assert!(Config::parse("[sms]\nprovider = \"pigeon\"\n").is_err());
    assert!(Config::parse("[sms]\nprovider = \"webhook\"\n").is_err());
    assert!(Config::parse("[server]\ndomain = \"example.org\"\n").is_ok());
    assert!(Config::parse("[tls]\ncert = \"cert.pem\"\n").is_err());
    assert!(Config::parse("[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n").is_ok());
    assert!(Config::parse("[smtp]\nsessions_per_ip = 0\n").is_err());
    assert!(Config::parse("[smtp]\nhostname = \"mx example\"\n").is_err());
    assert!(Config::parse("[smtp]\nmax_received_headers = 0\n").is_err());
    assert!(Config::parse("[smtp]\nmax_received_headers = 1\n").is_ok());
    assert!(Config::parse("[smtp]\nsession_seconds = 0\n").is_err());
    assert!(Config::parse("[smtp]\nspool_threshold = 1000\n").is_err());
    assert!(Config::parse("[smtp]\nspool_threshold = 65536\nmax_bytes_in_flight = 131071\n").is_err());
    assert!(Config::parse("[smtp]\nspool_threshold = 65536\nmax_bytes_in_flight = 131072\n").is_ok());
    assert!(Config::parse("[outbound]\nmx_allow_loopback = true\n").is_err(), "renamed to allow_private_targets");
    assert!(Config::parse("[jobs]\nqueue_bytes = 0\n").is_err());
    assert!(Config::parse("[stream]\nrtmp_max_connections = 0\n").is_err());
    assert!(Config::parse("[server]\nsecure_cookies = true\n").is_err(), "replaced by trusted_proxies");
    assert!(Config::parse("[server]\ntrusted_proxies = [\"proxy.example\"]\n").is_err());
    assert!(Config::parse("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").is_err());
    assert!(Config::parse("[auth]\naccount_lockout_failures = 10\n").is_err(), "replaced by per-network throttling");
    assert!(Config::parse("[auth]\nfailure_window_seconds = 0\n").is_err());
    assert!(Config::parse("[auth]\nnetwork_ban_seconds = 0\n").is_err());
    assert!(Config::parse("[auth]\nnetwork_ban_failures = 0\nfailures_per_account_network = 0\n").is_ok());
}

#[test]
fn trusted_proxies_take_addresses_and_cidr_blocks() {
    let c =
        Config::parse("[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.1.2.3/8\", \"fd00::/8\"]\n").expect("parses");
    let shown: Vec<String> = c.server.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let inside = |s: &str| c.server.trusted_proxies.iter().any(|p| p.contains(ip(s)));
    assert!(inside("127.0.0.1") && inside("::ffff:127.0.0.1") && inside("10.200.0.1") && inside("fd12::1"));
    assert!(!inside("127.0.0.2") && !inside("11.0.0.1") && !inside("fe80::1"));
}

#[test]
fn the_rtmp_publish_deadline_is_read_and_checked() {
    assert_eq!(Config::default().stream.rtmp_publish_seconds, 10);
    assert_eq!(Config::parse("[stream]\nrtmp_publish_seconds = 3\n").expect("parses").stream.rtmp_publish_seconds, 3);
    assert!(Config::parse("[stream]\nrtmp_publish_seconds = 0\n").is_err(), "0 would close every connection");
}

#[test]
fn registration_is_closed_unless_the_file_opens_it() {
    assert!(!Config::default().auth.open_registration, "closed by default: invitations only");
    assert!(!Config::parse(SHIPPED).expect("config.toml parses").auth.open_registration);
    assert!(Config::parse("[auth]\nopen_registration = true\n").expect("parses").auth.open_registration);
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of every leaf value of `table` (an empty table counts as a leaf).
fn leaves(table: &toml::Table, prefix: &[Step], out: &mut Vec<Vec<Step>>) {
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(Step::Key(key.clone()));
        match value {
            toml::Value::Table(t) if !t.is_empty() => leaves(t, &path, out),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                for (i, entry) in a.iter().enumerate() {
                    let mut path = path.clone();
                    path.push(Step::Index(i));
                    if let toml::Value::Table(t) = entry {
                        leaves(t, &path, out);
                    }
                }
            }
            _ => out.push(path),
        }
    }
}

/// `section.key` of a path, without array indices.
fn dotted(path: &[Step]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

fn at<'a>(value: &'a mut toml::Value, path: &[Step]) -> &'a mut toml::Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// A value of the same type as `v` that differs from it and is valid for `key`.
fn changed(v: &toml::Value, key: &str) -> toml::Value {
    use toml::Value;
    match v {
        Value::Boolean(b) => Value::Boolean(!b),
        Value::Integer(i) => Value::Integer(i + 1),
        Value::Float(f) => Value::Float(f + 0.5),
        Value::String(_) if key == "inbound.dmarc_reject" => Value::String("spam".into()),
        Value::String(s) => match s.parse::<std::net::SocketAddr>() {
            Ok(mut addr) => {
                addr.set_port(addr.port().wrapping_add(1));
                Value::String(addr.to_string())
            }
            Err(_) if s.is_empty() => Value::String("127.0.0.1:25".into()),
            Err(_) => Value::String(format!("{s}x")),
        },
        Value::Array(_) if key == "server.trusted_proxies" => Value::Array(vec![Value::String("10.0.0.0/8".into())]),
        Value::Array(_) => Value::Array(vec![Value::String("127.0.0.1:53".into())]),
        Value::Table(_) => {
            let mut t = toml::Table::new();
            t.insert("example.test".into(), Value::String("127.0.0.1:2526".into()));
            Value::Table(t)
        }
        Value::Datetime(_) => panic!("config.toml holds no dates"),
    }
}

#[test]
fn config_toml_documents_every_field_of_the_config() {
    let doc: toml::Table = SHIPPED.parse().expect("config.toml is TOML");
    let schema = match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        other => panic!("the defaults serialise to a table: {other:?}"),
    };
    let names = |table: &toml::Table| {
        let mut paths = vec![];
        leaves(table, &[], &mut paths);
        paths.iter().map(|p| dotted(p)).collect::<std::collections::BTreeSet<String>>()
    };
    let (shipped, fields) = (names(&doc), names(&schema));
    let undocumented: Vec<&String> = fields.difference(&shipped).collect();
    assert!(undocumented.is_empty(), "fields missing from config.toml: {undocumented:?}");
    assert_eq!(shipped, fields);
}

#[test]
fn every_key_in_config_toml_is_read_into_the_config() {
    let doc: toml::Table = SHIPPED.parse().expect("config.toml is TOML");
    let mut paths = vec![];
    leaves(&doc, &[], &mut paths);
    assert!(paths.len() > 90, "config.toml has {} keys", paths.len());
    let defaults = format!("{:?}", Config::default());
    for path in &paths {
        let mut value = toml::Value::Table(doc.clone());
        let leaf = at(&mut value, path);
        *leaf = changed(leaf, &dotted(path));
        let text = toml::to_string(&value).expect("serialises");
        let parsed: Config = crate::platform::config::parse(&text)
            .unwrap_or_else(|e| panic!("{} changed: config.toml no longer parses: {e}", dotted(path)));
        assert_ne!(format!("{parsed:?}"), defaults, "{} changes nothing in Config", dotted(path));
    }
}

/// Every `.rs` file under `dir` but the configuration schema files.
fn code_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source tree") {
        let p = entry.expect("readable entry").path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "config") {
            code_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") && p.file_name().is_some_and(|n| n != "config.rs") {
            out.push(p);
        }
    }
}

/// Whether `code` reads a field named `key`: `.key` not followed by an identifier
/// character or by an assignment.
fn reads_field(code: &str, key: &str) -> bool {
    let needle = format!(".{key}");
    code.match_indices(&needle).any(|(i, _)| {
        let rest = &code[i + needle.len()..];
        let next = rest.chars().next().unwrap_or(' ');
        let after = rest.trim_start();
        let assigned = after.starts_with('=') && !after.starts_with("==") && !after.starts_with("=>");
        !(next.is_alphanumeric() || next == '_' || assigned)
    })
}

#[test]
fn every_key_in_config_toml_is_used_by_code_outside_the_config() {
    let doc: toml::Table = SHIPPED.parse().expect("config.toml is TOML");
    let mut paths = vec![];
    leaves(&doc, &[], &mut paths);
    let mut files = vec![];
    code_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let code: String = files.iter().map(|f| std::fs::read_to_string(f).expect("readable file")).collect();
    let unused: Vec<String> = paths
        .iter()
        .map(|p| dotted(p))
        .filter(|d| !RESERVED.contains(&d.as_str()))
        .filter(|d| !reads_field(&code, d.rsplit('.').next().unwrap_or(d)))
        .collect();
    assert!(unused.is_empty(), "keys no code reads: {unused:?}");
    assert!(!reads_field("c.server.imap_x = 1; s.imap = v;", "imap"), "the check can fail");
    for key in RESERVED {
        let name = key.rsplit('.').next().unwrap_or(key);
        let documented = SHIPPED.lines().take_while(|l| !l.starts_with(&format!("{name} ="))).last();
        assert!(documented.is_some_and(|l| l.contains("reserved")), "{key} is documented as reserved");
    }
}
