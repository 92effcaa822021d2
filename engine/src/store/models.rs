//! Versioned models (failure classifiers): each training adds `name@N`; one version
//! per name is promoted to serve. Models are opaque bytes here; `detect` encodes them.

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_core::now_ms;

/// What the store knows about a model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub name: String,
    pub version: u32,
    pub created_ms: i64,
    /// Training figures (validation, hold-out, baseline), as the trainer reported them.
    pub evaluation: Value,
    #[serde(default)]
    pub promoted: bool,
}

impl ModelMeta {
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

fn model_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(b'@');
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl Store {
    fn model_trees(&self) -> Result<(sled::Tree, sled::Tree), StoreError> {
        Ok((
            self.db.open_tree("model_meta")?,
            self.db.open_tree("model_bytes")?,
        ))
    }

    /// Stores a new version of `name` and returns its metadata (not promoted).
    pub fn put_model(
        &self,
        name: &str,
        bytes: &[u8],
        evaluation: Value,
    ) -> Result<ModelMeta, StoreError> {
        let (meta, blobs) = self.model_trees()?;
        let version = self
            .models()?
            .iter()
            .filter(|m| m.name == name)
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
            + 1;
        let m = ModelMeta {
            name: name.to_string(),
            version,
            created_ms: now_ms(),
            evaluation,
            promoted: false,
        };
        blobs.insert(model_key(name, version), bytes)?;
        meta.insert(
            model_key(name, version),
            serde_json::to_vec(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )?;
        self.mark_written();
        Ok(m)
    }

    /// Every model version, by name then version.
    pub fn models(&self) -> Result<Vec<ModelMeta>, StoreError> {
        let (meta, _) = self.model_trees()?;
        meta.iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("model metadata: {e}")))
            })
            .collect()
    }

    /// A version's bytes; `version: None` means the promoted one.
    pub fn model(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<(ModelMeta, Vec<u8>), StoreError> {
        let all = self.models()?;
        let m = all
            .into_iter()
            .filter(|m| m.name == name)
            .find(|m| version.map_or(m.promoted, |v| m.version == v))
            .ok_or_else(|| {
                StoreError::NotFound(match version {
                    Some(v) => format!("{name}@{v}"),
                    None => format!("{name} (no promoted version)"),
                })
            })?;
        let (_, blobs) = self.model_trees()?;
        let bytes = blobs
            .get(model_key(name, m.version))?
            .ok_or_else(|| StoreError::Corrupt(format!("{} has no bytes", m.id())))?;
        Ok((m, bytes.to_vec()))
    }

    /// Makes `name@version` the one that serves; the previous one stops serving.
    pub fn promote_model(&self, name: &str, version: u32) -> Result<ModelMeta, StoreError> {
        let (meta, _) = self.model_trees()?;
        let mut promoted = None;
        for mut m in self.models()?.into_iter().filter(|m| m.name == name) {
            let should = m.version == version;
            if m.promoted != should {
                m.promoted = should;
                meta.insert(
                    model_key(name, m.version),
                    serde_json::to_vec(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )?;
            }
            if should {
                promoted = Some(m);
            }
        }
        self.mark_written();
        promoted.ok_or_else(|| StoreError::NotFound(format!("{name}@{version}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_one_is_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.put_model("disk", b"one", Value::Null).unwrap();
        let b = store.put_model("disk", b"two", Value::Null).unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert!(matches!(
            store.model("disk", None),
            Err(StoreError::NotFound(_))
        ));
        store.promote_model("disk", 1).unwrap();
        assert_eq!(store.model("disk", None).unwrap().1, b"one");
        store.promote_model("disk", 2).unwrap();
        let (m, bytes) = store.model("disk", None).unwrap();
        assert_eq!((m.version, bytes.as_slice()), (2, b"two".as_slice()));
        assert_eq!(
            store
                .models()
                .unwrap()
                .iter()
                .filter(|m| m.promoted)
                .count(),
            1
        );
        assert!(store.promote_model("disk", 9).is_err());
    }
}
