//! Waking whoever waits on a case (`?wait` long polls) and the webhook notifier, after a
//! commit — per case, so that a commit wakes only the waiters of the cases it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::Engine;

/// Waiters by case id, plus the outbox signal.
#[derive(Default)]
pub(crate) struct Watchers {
    cases: Mutex<HashMap<String, Weak<Notify>>>,
    outbox: Arc<Notify>,
}

/// A registration of interest in one case: [`CaseWatch::notified`] completes after a
/// change of that case is committed (by this process, or reported by another node).
#[derive(Debug, Clone)]
pub struct CaseWatch {
    notify: Arc<Notify>,
}

impl CaseWatch {
    /// The next change of the case. Create the future (and `enable` it) before reading the
    /// case's state, so that a change in between is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Watchers {
    fn watch(&self, case: &str) -> CaseWatch {
        let mut map = crate::sync::lock(&self.cases);
        if let Some(n) = map.get(case).and_then(Weak::upgrade) {
            return CaseWatch { notify: n };
        }
        // Drop registrations nobody holds any more, at most as often as the map doubles.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        map.insert(case.to_owned(), Arc::downgrade(&n));
        CaseWatch { notify: n }
    }

    pub(crate) fn changed(&self, cases: &[String], outbox: bool) {
        if !cases.is_empty() {
            let map = crate::sync::lock(&self.cases);
            for id in cases {
                if let Some(n) = map.get(id).and_then(Weak::upgrade) {
                    n.notify_waiters();
                }
            }
        }
        if outbox {
            self.outbox.notify_one();
        }
    }

    fn wake_all(&self) {
        let map = crate::sync::lock(&self.cases);
        for n in map.values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

impl Engine {
    /// Registers interest in a case's next change.
    pub fn watch_case(&self, case: &str) -> CaseWatch {
        self.watch.watch(case)
    }

    /// Reports changes committed elsewhere (another node): wakes their waiters.
    pub fn cases_changed(&self, cases: &[String], outbox: bool) {
        self.watch.changed(cases, outbox);
    }

    /// Wakes every waiter (the server is shutting down).
    pub fn wake_all_waiters(&self) {
        self.watch.wake_all();
    }

    /// Signalled when a commit queued a webhook notification.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.watch.outbox.clone()
    }
}
