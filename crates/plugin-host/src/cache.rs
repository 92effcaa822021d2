//! The compile cache: `.cwasm` files keyed by the component's content hash and
//! the engine's compatibility hash. A `.cwasm` is native code that runs outside the
//! sandbox, so an entry is used only when
//! - it lies in a directory that only vigil's user can write (owned by it, not
//!   group- or world-writable; created so), and is such a file itself;
//! - its header names the SHA-256 of the very component being loaded and this
//!   engine's hash (an entry copied under another plugin's name is refused);
//! - the SHA-256 of its payload matches, checked before wasmtime sees it.
//!
//! Anything else is rebuilt or, in an untrusted directory, compiled in memory.
//! Entries are written to a temporary file and renamed into place.

use super::error::PluginError;
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"VIGILCW2";
/// Magic, the component's SHA-256, the engine hash, the payload's SHA-256.
const HEADER: usize = 8 + 32 + 8 + 32;

/// What the cache did for one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache directory configured: compiled in memory.
    Disabled,
    /// Loaded a verified `.cwasm`.
    Hit,
    /// Compiled and stored.
    Miss,
    /// An entry existed but was unusable; compiled and replaced.
    Rebuilt { reason: String },
    /// The directory or entry could be written by someone else: compiled in
    /// memory, nothing read from or written to it.
    Untrusted { reason: String },
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The content hash of a component (hex SHA-256).
pub fn content_hash(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

fn engine_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Path of the cache entry for these bytes under `dir`.
pub fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    dir.join(format!(
        "{}-{:016x}.cwasm",
        &content_hash(wasm)[..32],
        engine_hash(engine)
    ))
}

/// The payload of a cache file, if the file was made from exactly `wasm_sha` by
/// this engine and is intact.
fn verified_payload<'f>(file: &'f [u8], wasm_sha: &[u8], engine: u64) -> Result<&'f [u8], String> {
    if file.len() < HEADER || &file[..MAGIC.len()] != MAGIC {
        return Err("bad header".into());
    }
    let (header, payload) = file.split_at(HEADER);
    if &header[8..40] != wasm_sha {
        return Err("compiled from other bytes than this plugin's".into());
    }
    if header[40..48] != engine.to_le_bytes() {
        return Err("compiled by another engine".into());
    }
    if Sha256::digest(payload).as_slice() != &header[48..80] {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether only vigil's user can have written `meta`'s file or directory.
fn only_ours(meta: &std::fs::Metadata, what: &Path) -> Result<(), String> {
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a symbolic link", what.display()));
    }
    if meta.uid() != current_uid() {
        return Err(format!(
            "{} is owned by uid {}, not vigil's ({})",
            what.display(),
            meta.uid(),
            current_uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o})",
            what.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Creates the directory (only vigil's user may write it) or checks the one there.
fn trusted_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => only_ours(&meta, dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display())),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, payload: &[u8]) -> Result<Component, String> {
    // SAFETY: wasmtime requires the bytes to come from `Engine::precompile_component`
    // / `Component::serialize` of a compatible engine. `payload` is what this module
    // wrote for exactly this component and engine, in a directory only this user can
    // write (checked just before), its SHA-256 checked just before this call; and
    // wasmtime itself re-checks the engine/version header.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e:#}"))
}

/// Compiles `wasm` or loads it from the cache in `dir`.
pub(crate) fn load(
    engine: &Engine,
    dir: Option<&Path>,
    wasm: &[u8],
    source: &Path,
) -> Result<(Component, CacheOutcome), PluginError> {
    let compile = || {
        Component::new(engine, wasm).map_err(|e| PluginError::Load {
            path: source.to_path_buf(),
            detail: format!("{e:#}"),
        })
    };
    let Some(dir) = dir else {
        return Ok((compile()?, CacheOutcome::Disabled));
    };
    if let Err(reason) = trusted_dir(dir) {
        tracing::warn!(%reason, "not using the plugin compile cache");
        return Ok((compile()?, CacheOutcome::Untrusted { reason }));
    }
    let path = entry_path(dir, engine, wasm);
    let wasm_sha = Sha256::digest(wasm);
    let engine_id = engine_hash(engine);
    let mut rebuilt = None;
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            let usable = only_ours(&meta, &path)
                .and_then(|()| std::fs::read(&path).map_err(|e| e.to_string()))
                .and_then(|file| {
                    verified_payload(&file, &wasm_sha, engine_id)
                        .and_then(|p| deserialize_verified(engine, p))
                });
            match usable {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "discarding unusable compile-cache entry");
                    rebuilt = Some(reason);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => rebuilt = Some(e.to_string()),
    }
    let component = compile()?;
    store(&path, &component, &wasm_sha, engine_id)?;
    let outcome = match rebuilt {
        Some(reason) => CacheOutcome::Rebuilt { reason },
        None => CacheOutcome::Miss,
    };
    Ok((component, outcome))
}

fn store(
    path: &Path,
    component: &Component,
    wasm_sha: &[u8],
    engine: u64,
) -> Result<(), PluginError> {
    use std::io::Write as _;
    let cache_err = |detail: String| PluginError::Cache {
        path: path.to_path_buf(),
        detail,
    };
    let payload = component
        .serialize()
        .map_err(|e| cache_err(format!("serialize: {e:#}")))?;
    let mut file = Vec::with_capacity(payload.len() + HEADER);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(wasm_sha);
    file.extend_from_slice(&engine.to_le_bytes());
    file.extend_from_slice(&Sha256::digest(&payload));
    file.extend_from_slice(&payload);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    // A fresh file (never one planted under the temporary name), readable by vigil only.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| cache_err(e.to_string()))?;
    out.write_all(&file)
        .and_then(|()| out.sync_all())
        .map_err(|e| cache_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| cache_err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8], wasm_sha: &[u8], engine: u64) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(wasm_sha);
        file.extend_from_slice(&engine.to_le_bytes());
        file.extend_from_slice(&Sha256::digest(payload));
        file.extend_from_slice(payload);
        file
    }

    #[test]
    fn payload_verification_rejects_tampering_and_other_plugins() {
        let sha = Sha256::digest(b"plugin a");
        let other = Sha256::digest(b"plugin b");
        let file = entry(b"hello", &sha, 7);
        assert_eq!(verified_payload(&file, &sha, 7).expect("valid"), b"hello");
        let e = verified_payload(&file, &other, 7).expect_err("another plugin's entry");
        assert!(e.contains("other bytes"), "{e}");
        let e = verified_payload(&file, &sha, 8).expect_err("another engine");
        assert!(e.contains("another engine"), "{e}");
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verified_payload(&bad, &sha, 7).is_err());
        assert!(verified_payload(&file[..20], &sha, 7).is_err());
        assert!(verified_payload(b"", &sha, 7).is_err());
    }

    #[test]
    fn a_directory_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("cache");
        trusted_dir(&dir).expect("created");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = trusted_dir(&dir).expect_err("world-writable");
        assert!(e.contains("writable by others"), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let e = trusted_dir(&link).expect_err("a symlink");
        assert!(e.contains("symbolic link"), "{e}");
    }
}
