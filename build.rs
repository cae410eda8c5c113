//! Build script: brings the browser libraries from `node_modules/` (installed by `npm ci`
//! from `package.json` and its lockfile) into the binary. Today that is hls.js's
//! `hls.min.js`, copied to `$OUT_DIR/vendor/hls.min.js` for `src/doors/http/web.rs` to
//! embed; when it has not been installed yet (a fresh clone before `npm ci`) an empty file
//! stands in, so the crate still compiles and `/vendor/hls.min.js` answers 404 with a hint.
//! It also makes sure the empty `node_modules/hls.js/dist/` folder exists, so watching it
//! works before `npm ci`. It never downloads anything and never writes into the sources.

use std::path::{Path, PathBuf};

/// The browser library files embedded in the binary: (path under the crate, name in `vendor/`).
const VENDOR_FILES: [(&str, &str); 1] = [("node_modules/hls.js/dist/hls.min.js", "hls.min.js")];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("vendor");
    if let Err(e) = std::fs::create_dir_all(&out) {
        panic!("cannot create {}: {e}", out.display());
    }
    for (source, name) in VENDOR_FILES {
        let source = manifest.join(source);
        if let Some(folder) = source.parent() {
            // Watching a folder that exists rebuilds once `npm ci` fills it; watching a
            // missing path would rebuild every time.
            let _ = std::fs::create_dir_all(folder);
            println!("cargo:rerun-if-changed={}", folder.display());
        }
        copy_or_empty(&source, &out.join(name));
    }
}

/// Copies `source` to `target`, or writes an empty `target` when `source` is missing.
fn copy_or_empty(source: &Path, target: &Path) {
    let data = match std::fs::read(source) {
        Ok(data) => data,
        Err(_) => {
            println!("cargo:warning={} is missing: run `npm ci`, or the web player has no hls.js", source.display());
            Vec::new()
        }
    };
    // Rewrite only on change, so an unchanged file does not rebuild the crate.
    if std::fs::read(target).ok().as_deref() != Some(&data[..])
        && let Err(e) = std::fs::write(target, &data)
    {
        panic!("cannot write {}: {e}", target.display());
    }
}
