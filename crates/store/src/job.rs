//! A write set on its way to the serial step (SQLite's writer thread, PostgreSQL's
//! sequencer), shared by both backends. Everything that costs CPU besides sequencing is
//! kept off the serial step: [`Job::new`] packs the stored forms on the caller's task, and
//! the caller holds the second reference to them, so that the serial step only drops its
//! own (a reference count) before answering and the memory is freed on the caller's task
//! (freeing a write set's many small allocations was ≈ 11 % of the writer thread's CPU).

use std::ops::Deref;
use std::sync::Arc;

use agentsigna_core::store::{Committed, StoreResult, WriteSet};
use tokio::sync::oneshot;

use crate::layout::Packed;

/// What the serial step writes: the write set and its values in their stored forms.
pub(crate) struct Work {
    pub writes: WriteSet,
    /// `writes`' values in their stored forms, made on the caller's task.
    pub packed: Packed,
}

/// One write set and where its answer goes.
pub(crate) struct Job {
    work: Arc<Work>,
    reply: oneshot::Sender<StoreResult<Committed>>,
}

impl Job {
    /// The job, and the reference the caller keeps until the answer arrives.
    pub(crate) fn new(writes: WriteSet, reply: oneshot::Sender<StoreResult<Committed>>) -> (Job, Arc<Work>) {
        let work = Arc::new(Work { packed: Packed::of(&writes), writes });
        (Job { work: Arc::clone(&work), reply }, work)
    }

    /// Answers the caller, dropping the serial step's reference first (so that the
    /// caller, not the serial step, frees the write set).
    pub(crate) fn answer(self, result: StoreResult<Committed>) {
        let Job { work, reply } = self;
        drop(work);
        let _ = reply.send(result);
    }
}

impl Deref for Job {
    type Target = Work;

    fn deref(&self) -> &Work {
        &self.work
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_caller_holds_the_last_reference_when_the_answer_arrives() {
        let (reply, mut rx) = oneshot::channel();
        let (job, work) = Job::new(WriteSet::default(), reply);
        assert_eq!(Arc::strong_count(&work), 2);
        job.answer(Ok(Committed { first_index: 0, tree_size: 0 }));
        assert!(rx.try_recv().unwrap().is_ok());
        assert_eq!(Arc::strong_count(&work), 1, "the serial step dropped its reference before answering");
    }
}
