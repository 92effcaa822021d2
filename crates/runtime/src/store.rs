//! What the detector runtime keeps in the store: versioned models (failure
//! classifiers: each training adds `name@N`, one version per name is promoted to
//! serve; opaque bytes here, `detect` encodes them), and the detections and forecasts
//! that `vigil evaluate` scores against what happened.

use crate::detectors::{Detection, ForecastRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_core::now_ms;
use vigil_store::{Store, StoreError};

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

const PREDICTIONS: &str = "predictions";
const FORECASTS: &str = "forecasts";

/// Models, detections and forecasts in a [`Store`].
pub trait DetectorStore {
    /// Stores a new version of `name` and returns its metadata (not promoted).
    fn put_model(
        &self,
        name: &str,
        bytes: &[u8],
        evaluation: Value,
    ) -> Result<ModelMeta, StoreError>;
    /// Every model version, by name then version.
    fn models(&self) -> Result<Vec<ModelMeta>, StoreError>;
    /// A version's bytes; `version: None` means the promoted one.
    fn model(&self, name: &str, version: Option<u32>) -> Result<(ModelMeta, Vec<u8>), StoreError>;
    /// Makes `name@version` the one that serves; the previous one stops serving.
    fn promote_model(&self, name: &str, version: u32) -> Result<ModelMeta, StoreError>;
    /// Appends what detectors found (firing and resolved). Not yet durable.
    fn put_predictions(&self, found: &[Detection]) -> Result<(), StoreError>;
    /// Every stored prediction, oldest first.
    fn predictions(&self) -> Result<Vec<Detection>, StoreError>;
    /// Appends forecasts (made durable by the next flush).
    fn put_forecasts(&self, made: &[ForecastRecord]) -> Result<(), StoreError>;
    fn forecasts(&self) -> Result<Vec<ForecastRecord>, StoreError>;
    /// Removes predictions made before `before_s` (seconds); returns how many.
    fn prune_predictions(&self, before_s: i64) -> Result<usize, StoreError>;
    /// Removes forecasts made before `before_s` (seconds); returns how many.
    fn prune_forecasts(&self, before_s: i64) -> Result<usize, StoreError>;
}

/// Appends `records` under fresh increasing keys, in one batch.
fn append_all<V: serde::Serialize + serde::de::DeserializeOwned>(
    store: &Store,
    table: &'static str,
    records: &[V],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let keys = records
        .iter()
        .map(|_| store.unique_id().map(u64::to_be_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .table::<V>(table)?
        .apply(keys.iter().zip(records), std::iter::empty::<&[u8; 8]>())
}

const MODEL_META: &str = "model_meta";
const MODEL_BYTES: &str = "model_bytes";

impl DetectorStore for Store {
    fn put_model(
        &self,
        name: &str,
        bytes: &[u8],
        evaluation: Value,
    ) -> Result<ModelMeta, StoreError> {
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
        self.blobs(MODEL_BYTES)?
            .put(&model_key(name, version), bytes)?;
        self.table(MODEL_META)?.put(&model_key(name, version), &m)?;
        Ok(m)
    }

    fn models(&self) -> Result<Vec<ModelMeta>, StoreError> {
        self.table(MODEL_META)?.all()
    }

    fn model(&self, name: &str, version: Option<u32>) -> Result<(ModelMeta, Vec<u8>), StoreError> {
        let m = self
            .models()?
            .into_iter()
            .filter(|m| m.name == name)
            .find(|m| version.map_or(m.promoted, |v| m.version == v))
            .ok_or_else(|| match version {
                Some(v) => StoreError::NotFound {
                    what: "model",
                    key: format!("{name}@{v}"),
                },
                None => StoreError::NotFound {
                    what: "promoted version of model",
                    key: name.to_string(),
                },
            })?;
        let bytes = self
            .blobs(MODEL_BYTES)?
            .get(&model_key(name, m.version))?
            .ok_or_else(|| StoreError::Corrupt(format!("{} has no bytes", m.id())))?;
        Ok((m, bytes))
    }

    fn promote_model(&self, name: &str, version: u32) -> Result<ModelMeta, StoreError> {
        let meta = self.table::<ModelMeta>(MODEL_META)?;
        let versions: Vec<ModelMeta> = self
            .models()?
            .into_iter()
            .filter(|m| m.name == name)
            .collect();
        // Checked before anything changes: promoting a version that does not exist
        // must leave the one serving as it is.
        if !versions.iter().any(|m| m.version == version) {
            return Err(StoreError::NotFound {
                what: "model",
                key: format!("{name}@{version}"),
            });
        }
        let mut promoted = None;
        for mut m in versions {
            let should = m.version == version;
            if m.promoted != should {
                m.promoted = should;
                meta.put(&model_key(name, m.version), &m)?;
            }
            if should {
                promoted = Some(m);
            }
        }
        promoted.ok_or_else(|| StoreError::NotFound {
            what: "model",
            key: format!("{name}@{version}"),
        })
    }

    fn put_predictions(&self, found: &[Detection]) -> Result<(), StoreError> {
        append_all(self, PREDICTIONS, found)
    }

    fn predictions(&self) -> Result<Vec<Detection>, StoreError> {
        self.table(PREDICTIONS)?.all()
    }

    fn put_forecasts(&self, made: &[ForecastRecord]) -> Result<(), StoreError> {
        append_all(self, FORECASTS, made)
    }

    fn forecasts(&self) -> Result<Vec<ForecastRecord>, StoreError> {
        self.table(FORECASTS)?.all()
    }

    fn prune_predictions(&self, before_s: i64) -> Result<usize, StoreError> {
        Ok(self
            .table::<Detection>(PREDICTIONS)?
            .prune(|d| d.at < before_s)?
            .len())
    }

    fn prune_forecasts(&self, before_s: i64) -> Result<usize, StoreError> {
        Ok(self
            .table::<ForecastRecord>(FORECASTS)?
            .prune(|f| f.made_at < before_s)?
            .len())
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
            Err(StoreError::NotFound { .. })
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
        let (m, _) = store.model("disk", None).unwrap();
        assert_eq!(
            m.version, 2,
            "a failed promotion leaves the serving version serving"
        );
    }
}
