//! The compile cache: `.cwasm` files keyed by the component's content hash and
//! the engine's compatibility hash. Each file carries a SHA-256 of its payload,
//! checked before the payload is handed to wasmtime; a corrupt, truncated,
//! stale or incompatible entry is rebuilt, never trusted.

use super::error::PluginError;
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"VIGILCW1";

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

fn engine_hash(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Path of the cache entry for these bytes under `dir`.
pub fn entry_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    dir.join(format!(
        "{}-{}.cwasm",
        &content_hash(wasm)[..32],
        engine_hash(engine)
    ))
}

fn verified_payload(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < MAGIC.len() + 32 || &file[..MAGIC.len()] != MAGIC {
        return Err("bad header".into());
    }
    let (digest, payload) = file[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, payload: &[u8]) -> Result<Component, String> {
    // SAFETY: wasmtime requires the bytes to come from `Engine::precompile_component`
    // / `Component::serialize` of a compatible engine. `payload` is exactly what this
    // module wrote (checked by SHA-256 over the whole payload just before this call),
    // and wasmtime itself re-checks the engine/version header.
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
    let path = entry_path(dir, engine, wasm);
    let mut rebuilt = None;
    match std::fs::read(&path) {
        Ok(file) => match verified_payload(&file).and_then(|p| deserialize_verified(engine, p)) {
            Ok(c) => return Ok((c, CacheOutcome::Hit)),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "discarding unusable compile-cache entry");
                rebuilt = Some(reason);
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => rebuilt = Some(e.to_string()),
    }
    let component = compile()?;
    store(dir, &path, &component)?;
    let outcome = match rebuilt {
        Some(reason) => CacheOutcome::Rebuilt { reason },
        None => CacheOutcome::Miss,
    };
    Ok((component, outcome))
}

fn store(dir: &Path, path: &Path, component: &Component) -> Result<(), PluginError> {
    let cache_err = |detail: String| PluginError::Cache {
        path: path.to_path_buf(),
        detail,
    };
    let payload = component
        .serialize()
        .map_err(|e| cache_err(format!("serialize: {e:#}")))?;
    std::fs::create_dir_all(dir).map_err(|e| cache_err(e.to_string()))?;
    let mut file = Vec::with_capacity(payload.len() + 40);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&Sha256::digest(&payload));
    file.extend_from_slice(&payload);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &file).map_err(|e| cache_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| cache_err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_verification_rejects_tampering() {
        let payload = b"hello".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(&payload));
        file.extend_from_slice(&payload);
        assert_eq!(verified_payload(&file).expect("valid"), b"hello");
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verified_payload(&bad).is_err());
        assert!(verified_payload(&file[..20]).is_err());
        assert!(verified_payload(b"").is_err());
    }
}
