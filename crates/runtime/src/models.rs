//! The classifier versions detectors serve: read from the store's promoted
//! version, decoded once per version, and swapped at the next run after a
//! `vigil model promote` (or a retraining that promotes) — no restart needed.

use super::detectors::ServedModel;
use crate::store::DetectorStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vigil_detect::classifier::FailureModel;
use vigil_store::Store;

/// Promoted models, by name, cached by version.
#[derive(Clone)]
pub struct ModelShelf {
    store: Store,
    cache: Arc<Mutex<HashMap<String, Arc<ServedModel>>>>,
}

impl std::fmt::Debug for ModelShelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached: Vec<String> = self
            .cache
            .lock()
            .map(|c| c.values().map(|m| m.id.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("ModelShelf")
            .field("cached", &cached)
            .finish()
    }
}

impl ModelShelf {
    pub fn new(store: Store) -> ModelShelf {
        ModelShelf {
            store,
            cache: Arc::default(),
        }
    }

    /// The version of `name` that serves now; `Ok(None)` when none is promoted.
    pub fn serving(&self, name: &str) -> Result<Option<Arc<ServedModel>>, String> {
        let metas = self.store.models().map_err(|e| e.to_string())?;
        let Some(meta) = metas.into_iter().find(|m| m.name == name && m.promoted) else {
            return Ok(None);
        };
        let id = meta.id();
        if let Some(m) = self.cache.lock().map_err(|e| e.to_string())?.get(name)
            && m.id == id
        {
            return Ok(Some(m.clone()));
        }
        let (_, bytes) = self
            .store
            .model(name, Some(meta.version))
            .map_err(|e| e.to_string())?;
        let model = FailureModel::from_bytes(&bytes).map_err(|e| format!("{id}: {e}"))?;
        let served = Arc::new(ServedModel { id, model });
        self.cache
            .lock()
            .map_err(|e| e.to_string())?
            .insert(name.to_string(), served.clone());
        Ok(Some(served))
    }
}
