//! Alerts, incidents (with their journal) and silences in the store.
//!
//! Writes are appended without waiting, like the execution journal; callers make
//! them durable with [`Store::sync`] before acknowledging anything.

use super::{Store, StoreError};
use crate::alert::{AlertRecord, Incident, IncidentEvent, Silence};
use std::sync::atomic::Ordering;

const ALERTS: &str = "alerts";
const INCIDENTS: &str = "incidents";
const INCIDENT_JOURNAL: &str = "incident_journal";
const SILENCES: &str = "silences";
const PREDICTIONS: &str = "predictions";
const GROUPS: &str = "alert_groups";
const FORECASTS: &str = "forecasts";

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    key: &[u8],
    v: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(v)
        .map_err(|e| StoreError::Corrupt(format!("{what} {}: {e}", String::from_utf8_lossy(key))))
}

impl Store {
    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    fn all<T: serde::de::DeserializeOwned>(&self, tree: &str) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(tree)?.iter() {
            let (k, v) = item?;
            out.push(decode(tree, &k, &v)?);
        }
        Ok(out)
    }

    /// Appends what detectors found (firing and resolved), for `vigil evaluate` to
    /// score against what happened. Not yet durable.
    pub fn put_predictions(
        &self,
        found: &[crate::schedule::detectors::Detection],
    ) -> Result<(), StoreError> {
        if found.is_empty() {
            return Ok(());
        }
        let tree = self.tree(PREDICTIONS)?;
        let mut batch = sled::Batch::default();
        for d in found {
            batch.insert(&self.db.generate_id()?.to_be_bytes(), encode(d)?);
        }
        tree.apply_batch(batch)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Saves the timing of alert groups and forgets groups that are gone. Not yet durable.
    pub fn put_groups(
        &self,
        changed: &[crate::alert::engine::GroupTiming],
        removed: &[String],
    ) -> Result<(), StoreError> {
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for g in changed {
            batch.insert(g.group.as_bytes(), encode(g)?);
        }
        for g in removed {
            batch.remove(g.as_bytes());
        }
        self.tree(GROUPS)?.apply_batch(batch)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn groups(&self) -> Result<Vec<crate::alert::engine::GroupTiming>, StoreError> {
        self.all(GROUPS)
    }

    /// Appends forecasts (made durable by the next flush).
    pub fn put_forecasts(
        &self,
        made: &[crate::schedule::detectors::ForecastRecord],
    ) -> Result<(), StoreError> {
        if made.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for f in made {
            batch.insert(&self.db.generate_id()?.to_be_bytes(), encode(f)?);
        }
        self.tree(FORECASTS)?.apply_batch(batch)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn forecasts(&self) -> Result<Vec<crate::schedule::detectors::ForecastRecord>, StoreError> {
        self.all(FORECASTS)
    }

    /// Every stored prediction, oldest first.
    pub fn predictions(&self) -> Result<Vec<crate::schedule::detectors::Detection>, StoreError> {
        self.all(PREDICTIONS)
    }

    /// Stores alert states (keyed by fingerprint), in one batch. Not yet durable.
    pub fn put_alerts(&self, alerts: &[AlertRecord]) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for a in alerts {
            batch.insert(a.fingerprint.as_bytes(), encode(a)?);
        }
        self.tree(ALERTS)?.apply_batch(batch)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.all(ALERTS)
    }

    pub fn put_incident(&self, inc: &Incident) -> Result<(), StoreError> {
        self.tree(INCIDENTS)?
            .insert(inc.id.as_bytes(), encode(inc)?)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// All incidents, oldest first.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.all(INCIDENTS)
    }

    pub fn incident(&self, id: &str) -> Result<Incident, StoreError> {
        let v = self
            .tree(INCIDENTS)?
            .get(id.as_bytes())?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        decode("incident", id.as_bytes(), &v)
    }

    /// Appends to an incident's journal (its `seq` is assigned here).
    pub fn append_incident_event(
        &self,
        id: &str,
        mut ev: IncidentEvent,
    ) -> Result<IncidentEvent, StoreError> {
        ev.seq = self.db.generate_id()?;
        let mut key = id.as_bytes().to_vec();
        key.push(b'/');
        key.extend_from_slice(&ev.seq.to_be_bytes());
        self.tree(INCIDENT_JOURNAL)?.insert(key, encode(&ev)?)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(ev)
    }

    pub fn incident_events(&self, id: &str) -> Result<Vec<IncidentEvent>, StoreError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(b'/');
        let mut out = Vec::new();
        for item in self.tree(INCIDENT_JOURNAL)?.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push(decode("incident journal", &k, &v)?);
        }
        Ok(out)
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        self.tree(SILENCES)?.insert(s.id.as_bytes(), encode(s)?)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        self.all(SILENCES)
    }

    /// A new silence id, unique within this store.
    pub fn next_silence_id(&self) -> Result<String, StoreError> {
        Ok(format!("sil-{:06}", self.db.generate_id()? + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertStatus, Labels};

    #[tokio::test]
    async fn alerts_incidents_and_silences_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "X".into());
        let rec = AlertRecord {
            fingerprint: "00000000000000aa".into(),
            labels,
            annotations: Labels::new(),
            status: AlertStatus::Firing,
            starts_at_ms: 1,
            ends_at_ms: None,
            generator_url: String::new(),
            count: 2,
            first_seen_ms: 1,
            last_seen_ms: 2,
            silenced_by: vec![],
            inhibited: false,
            incident: Some("inc-000001".into()),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_alerts(std::slice::from_ref(&rec)).unwrap();
            store
                .append_incident_event(
                    "inc-000001",
                    IncidentEvent {
                        seq: 0,
                        ts_ms: 1,
                        kind: "opened".into(),
                        detail: "x".into(),
                    },
                )
                .unwrap();
            store.sync().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.alerts().unwrap(), vec![rec]);
        let evs = store.incident_events("inc-000001").unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, "opened");
        assert!(matches!(
            store.incident("inc-9"),
            Err(StoreError::NotFound(_))
        ));
    }
}
