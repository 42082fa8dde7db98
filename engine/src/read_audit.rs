//! Group commit of read operations' audit events. Every read is audited
//! before its call returns, but concurrent reads share one write transaction:
//! each caller queues its event and waits for either its answer or the gate;
//! whoever holds the gate writes everything queued so far (as one statement)
//! and tells each waiter how it went. The write runs in a task of its own:
//! the batch holds other callers' events, and a leader whose caller goes
//! away (an HTTP client that disconnects) must not take them with it. A
//! caller whose event a leader wrote while it waited returns without
//! touching the gate. Under load this turns thousands of tiny transactions
//! on the hash-chained log into a few large ones; alone, a read costs one
//! transaction as before.
//!
//! The faces' `api_request` events (see `request_audit`) go through the same
//! queue, so under load a read's event and the request events written after
//! earlier responses share one transaction instead of taking turns at
//! SQLite's single writer.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::{NewAuditEvent, Store};

type Waiter = oneshot::Sender<bool>;

#[derive(Default)]
pub(crate) struct ReadAudit {
    queue: Mutex<Vec<(Vec<NewAuditEvent>, Waiter)>>,
    gate: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Engine {
    /// Appends a read's audit event; returns once it is committed.
    pub(crate) async fn append_read_audit(&self, event: NewAuditEvent) -> Result<()> {
        self.append_grouped(vec![event]).await
    }

    /// Appends events (in this order, together) through the group commit;
    /// returns once they are committed.
    pub(crate) async fn append_grouped(&self, events: Vec<NewAuditEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, mut wait) = oneshot::channel();
        let a = self.read_audit();
        a.queue
            .lock()
            .map_err(|_| Error::internal("audit queue poisoned"))?
            .push((events, done));
        let written = tokio::select! {
            biased;
            answer = &mut wait => answer.unwrap_or(false),
            leader = a.gate.clone().lock_owned() => {
                // Our event is either still queued (and goes out in this
                // batch) or was answered by the leader before us, which sent
                // every answer before it released the gate.
                let batch = std::mem::take(
                    &mut *a
                        .queue
                        .lock()
                        .map_err(|_| Error::internal("audit queue poisoned"))?,
                );
                if !batch.is_empty() {
                    // The batch holds other callers' events: it is written
                    // and answered in a task of its own, so a leader whose
                    // caller goes away (a client that disconnects) neither
                    // rolls their events back nor leaves them unanswered.
                    let store = self.store().clone();
                    let task = tokio::spawn(write_and_answer(store, batch, leader));
                    if task.await.is_err() {
                        return Err(Error::internal("the audit batch writer panicked"));
                    }
                }
                wait.try_recv().unwrap_or(false)
            }
        };
        if written {
            Ok(())
        } else {
            Err(Error::internal(
                "the audit event of this read could not be written",
            ))
        }
    }
}

/// Writes one batch as a single transaction and tells each waiter how it
/// went; holds the group commit's gate until every answer is sent.
async fn write_and_answer(
    store: Store,
    batch: Vec<(Vec<NewAuditEvent>, Waiter)>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
) {
    let (groups, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let events: Vec<NewAuditEvent> = groups.into_iter().flatten().collect();
    let written = async {
        let mut tx = store.begin_write().await?;
        tx.audit_only();
        tx.append_audit_batch(&events).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = &written {
        tracing::error!(error = ?e, events = events.len(), "could not write read audit events");
    }
    let ok = written.is_ok();
    for w in waiters {
        let _ = w.send(ok);
    }
}
