//! The webhook outbox as the server's notifier sees it: notifications written by the
//! engine in the transaction of the event they announce, read and retired here.

use super::Engine;
use crate::store::RecordKind;
use crate::Result;

impl Engine {
    /// Every queued notification (JSON bodies, oldest first).
    pub async fn outbox_items(&self) -> Result<Vec<String>> {
        self.read(|_, snap| Ok(snap.records(RecordKind::Outbox)?)).await
    }

    /// One queued notification, read from a fresh snapshot (`None`: retired meanwhile).
    pub async fn outbox_item(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.read(move |_, snap| Ok(snap.record(RecordKind::Outbox, &id)?.map(|v| v.body))).await
    }

    /// Retires delivered (or discarded) notifications.
    pub async fn outbox_remove(&self, ids: Vec<String>) -> Result<()> {
        let keys: Vec<String> = ids.iter().map(|i| format!("outbox:{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.transact(&keys, move |_, d| {
            for id in &ids {
                if d.record(RecordKind::Outbox, id)?.is_some() {
                    d.delete(RecordKind::Outbox, id);
                }
            }
            Ok(())
        })
        .await
    }

    /// Records the delivery state of a notification still queued (another node may have
    /// delivered and retired it meanwhile: then nothing is written).
    pub async fn outbox_update(&self, id: String, body: String) -> Result<()> {
        let key = format!("outbox:{id}");
        self.transact(&[&key], move |_, d| {
            if d.record(RecordKind::Outbox, &id)?.is_some() {
                d.put_raw(RecordKind::Outbox, &id, body.clone());
            }
            Ok(())
        })
        .await
    }
}
