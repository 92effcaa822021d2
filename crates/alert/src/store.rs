//! What the alert pipeline keeps in the store: alert states, group timings,
//! incidents with their journal, and silences.
//!
//! Writes are applied without waiting, like the execution journal; callers make
//! them durable with [`Store::sync`] before acknowledging anything.

use crate::engine::GroupTiming;
use crate::{AlertRecord, Incident, IncidentEvent, Silence};
use vigil_core::fingerprint::Fingerprint;
use vigil_store::{Sequenced, Store, StoreError};

const ALERTS: &str = "alerts";
const INCIDENTS: &str = "incidents";
const INCIDENT_JOURNAL: &str = "incident_journal";
const SILENCES: &str = "silences";
const GROUPS: &str = "alert_groups";

impl Sequenced for IncidentEvent {
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

/// Alerts, groups, incidents and silences in a [`Store`].
pub trait AlertStore {
    /// Stores alert states (keyed by fingerprint), in one batch. Not yet durable.
    fn put_alerts(&self, alerts: &[AlertRecord]) -> Result<(), StoreError>;
    fn alerts(&self) -> Result<Vec<AlertRecord>, StoreError>;
    /// Saves the timing of alert groups and forgets groups that are gone. Not yet durable.
    fn put_groups(
        &self,
        changed: &[GroupTiming],
        removed: &[Fingerprint],
    ) -> Result<(), StoreError>;
    fn groups(&self) -> Result<Vec<GroupTiming>, StoreError>;
    fn put_incident(&self, inc: &Incident) -> Result<(), StoreError>;
    /// All incidents, oldest first.
    fn incidents(&self) -> Result<Vec<Incident>, StoreError>;
    fn incident(&self, id: &str) -> Result<Incident, StoreError>;
    /// Appends to an incident's journal (its `seq` is assigned here).
    fn append_incident_event(
        &self,
        id: &str,
        ev: IncidentEvent,
    ) -> Result<IncidentEvent, StoreError>;
    fn incident_events(&self, id: &str) -> Result<Vec<IncidentEvent>, StoreError>;
    fn put_silence(&self, s: &Silence) -> Result<(), StoreError>;
    fn silences(&self) -> Result<Vec<Silence>, StoreError>;
    /// A new silence id, unique within this store.
    fn next_silence_id(&self) -> Result<String, StoreError>;
    /// Removes alerts resolved before `before_ms`; returns how many.
    fn prune_alerts(&self, before_ms: i64) -> Result<usize, StoreError>;
    /// Removes incidents `ids` with their journals.
    fn forget_incidents(&self, ids: &[String]) -> Result<(), StoreError>;
}

impl AlertStore for Store {
    fn put_alerts(&self, alerts: &[AlertRecord]) -> Result<(), StoreError> {
        self.table(ALERTS)?.apply(
            alerts.iter().map(|a| (a.fingerprint.to_string(), a)),
            std::iter::empty(),
        )
    }

    fn alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.table(ALERTS)?.all()
    }

    fn put_groups(
        &self,
        changed: &[GroupTiming],
        removed: &[Fingerprint],
    ) -> Result<(), StoreError> {
        self.table(GROUPS)?.apply(
            changed.iter().map(|g| (g.group.to_string(), g)),
            removed.iter().map(Fingerprint::to_string),
        )
    }

    fn groups(&self) -> Result<Vec<GroupTiming>, StoreError> {
        self.table(GROUPS)?.all()
    }

    fn put_incident(&self, inc: &Incident) -> Result<(), StoreError> {
        self.table(INCIDENTS)?.put(inc.id.as_bytes(), inc)
    }

    fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.table(INCIDENTS)?.all()
    }

    fn incident(&self, id: &str) -> Result<Incident, StoreError> {
        self.table(INCIDENTS)?
            .get(id.as_bytes())?
            .ok_or_else(|| StoreError::NotFound {
                what: "incident",
                key: id.to_string(),
            })
    }

    fn append_incident_event(
        &self,
        id: &str,
        ev: IncidentEvent,
    ) -> Result<IncidentEvent, StoreError> {
        self.journal(INCIDENT_JOURNAL)?.append(id, ev)
    }

    fn incident_events(&self, id: &str) -> Result<Vec<IncidentEvent>, StoreError> {
        self.journal(INCIDENT_JOURNAL)?.entries(id)
    }

    fn prune_alerts(&self, before_ms: i64) -> Result<usize, StoreError> {
        let gone = self.table::<AlertRecord>(ALERTS)?.prune(|a| {
            a.status == crate::AlertStatus::Resolved
                && a.ends_at_ms.unwrap_or(a.last_seen_ms) < before_ms
        })?;
        Ok(gone.len())
    }

    fn forget_incidents(&self, ids: &[String]) -> Result<(), StoreError> {
        let table = self.table::<Incident>(INCIDENTS)?;
        let journal = self.journal::<IncidentEvent>(INCIDENT_JOURNAL)?;
        for id in ids {
            table.remove(id.as_bytes())?;
            journal.forget(id)?;
        }
        Ok(())
    }

    fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        self.table(SILENCES)?.put(s.id.as_bytes(), s)
    }

    fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        self.table(SILENCES)?.all()
    }

    fn next_silence_id(&self) -> Result<String, StoreError> {
        Ok(format!("sil-{:06}", self.unique_id()? + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertStatus, Labels};
    use vigil_store::StoreError;

    #[tokio::test]
    async fn alerts_incidents_and_silences_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "X".into());
        let rec = AlertRecord {
            fingerprint: Fingerprint(0xaa),
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
            Err(StoreError::NotFound { .. })
        ));
    }

    /// Records spelling a fingerprint otherwise than 16 lowercase hex digits (as the
    /// readers before typed fingerprints took them) load, hold the same alert, and
    /// are written back spelled as always.
    #[tokio::test]
    async fn records_with_other_spellings_of_fingerprints_load() {
        use crate::engine::Engine;
        use crate::{IncomingAlert, fingerprint, fingerprint_hex, hash_pairs};
        use serde_json::{Value, json};

        let dir = tempfile::tempdir().expect("tempdir");
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "X30".into());
        let fp = fingerprint(&labels);
        // Upper case, no leading zero: stored under a key read after the usual one.
        let upper = format!("{fp:X}");
        assert!(upper > fingerprint_hex(fp));
        let group = fingerprint_hex(hash_pairs([
            ("alertname", "X30"),
            ("cluster", ""),
            ("service", ""),
        ]));
        {
            let store = Store::open(dir.path()).expect("open");
            let rec = json!({
                "fingerprint": upper, "labels": labels, "annotations": {},
                "status": "firing", "starts_at_ms": 1_000, "count": 1,
                "first_seen_ms": 1_000, "last_seen_ms": 1_000, "incident": "inc-000001",
            });
            let inc = json!({
                "id": "inc-000001", "status": "open", "severity": "", "title": "X30 (1 alert)",
                "opened_ms": 1_000, "updated_ms": 1_000, "labels": labels,
                "common_labels": labels, "root_cause": format!("000{fp:016x}"),
                "services": [], "groups": [group],
                "alerts": [{"fingerprint": format!("+{fp:x}"), "alertname": "X30",
                    "status": "firing", "role": "root_cause", "starts_at_ms": 1_000,
                    "severity": ""}],
            });
            let alerts = store.table::<Value>(ALERTS).expect("table");
            alerts.put(upper.as_bytes(), &rec).expect("put");
            let incidents = store.table::<Value>(INCIDENTS).expect("table");
            incidents.put(b"inc-000001", &inc).expect("put");
            store.sync().await.expect("sync");
        }
        let fresh = |store: &Store| {
            let mut e = Engine::new(Default::default(), &Default::default());
            e.restore(
                store.alerts().expect("alerts"),
                store.incidents().expect("incidents"),
                vec![],
                2_000,
            );
            e
        };
        let updated = {
            let store = Store::open(dir.path()).expect("open");
            let inc = store.incident("inc-000001").expect("incident");
            assert_eq!(inc.alerts[0].fingerprint, Fingerprint(fp));
            assert_eq!(inc.root_cause, Some(Fingerprint(fp)));
            let written = serde_json::to_value(&inc).expect("json");
            assert_eq!(
                written["alerts"][0]["fingerprint"],
                json!(format!("{fp:016x}"))
            );
            assert_eq!(written["root_cause"], json!(format!("{fp:016x}")));

            let mut engine = fresh(&store);
            assert_eq!(
                engine.alert(fp).map(|r| r.fingerprint),
                Some(Fingerprint(fp))
            );
            engine.ingest(
                IncomingAlert {
                    labels: labels.clone(),
                    annotations: Labels::new(),
                    status: AlertStatus::Firing,
                    starts_at_ms: Some(1_000),
                    ends_at_ms: None,
                    generator_url: String::new(),
                },
                2_000,
            );
            engine.tick(40_000);
            // The alert is the member it was, not a second one.
            let inc = engine.incident("inc-000001").expect("incident");
            assert_eq!(inc.alerts.len(), 1);
            assert_eq!(inc.root_cause, Some(Fingerprint(fp)));
            let rec = engine.alert(fp).expect("alert").clone();
            assert_eq!(rec.count, 2);
            store.put_alerts(std::slice::from_ref(&rec)).expect("put");
            store.sync().await.expect("sync");
            rec
        };
        // Stored again under the usual spelling, beside the old record, which is read
        // last: the one seen last holds.
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.alerts().expect("alerts").len(), 2);
        assert_eq!(fresh(&store).alert(fp), Some(&updated));
    }
}
