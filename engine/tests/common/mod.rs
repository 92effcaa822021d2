//! Test support: builds the plugin crates for wasm32-wasip2 once per test binary
//! (or uses `VIGIL_PLUGIN_DIR`, which `make plugins` fills), and small helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate: (package, file stem in the plugin dir).
pub const PLUGINS: &[(&str, &str)] = &[
    ("plugin-prometheus", "prometheus"),
    ("plugin-http", "http"),
    ("plugin-exec", "exec"),
    ("plugin-file", "file"),
    ("plugin-sim", "sim"),
    ("plugin-noop", "noop"),
    ("plugin-hostile", "hostile"),
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("engine/ has a parent").to_path_buf()
}

/// A directory holding `<stem>.wasm` for every plugin in [`PLUGINS`].
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(d) = std::env::var("VIGIL_PLUGIN_DIR") {
            let d = PathBuf::from(d);
            if PLUGINS.iter().all(|(_, stem)| d.join(format!("{stem}.wasm")).exists()) {
                return d;
            }
        }
        let root = workspace_root();
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        // A separate target dir: the outer `cargo test` may still hold the main one.
        let wasm_target = target.join("test-plugins");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root).env("CARGO_TARGET_DIR", &wasm_target).args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);
        for (pkg, _) in PLUGINS {
            cmd.args(["-p", pkg]);
        }
        let status = cmd.status().expect("run cargo to build the plugins");
        assert!(status.success(), "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)");
        let out = wasm_target.join("plugins");
        std::fs::create_dir_all(&out).expect("create plugin dir");
        for (pkg, stem) in PLUGINS {
            let built = wasm_target.join("wasm32-wasip2/release").join(format!("{}.wasm", pkg.replace('-', "_")));
            std::fs::copy(&built, out.join(format!("{stem}.wasm"))).expect("copy built plugin");
        }
        out
    })
}

pub fn plugin_path(stem: &str) -> PathBuf {
    plugin_dir().join(format!("{stem}.wasm"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
