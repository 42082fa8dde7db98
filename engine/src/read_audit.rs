//! Group commit of read operations' audit events. Every read is audited
//! before its call returns, but concurrent reads share one write transaction:
//! each caller queues its event and waits for either its answer or the gate;
//! whoever holds the gate writes everything queued so far (as one statement)
//! and tells each waiter how it went. A caller whose event a leader wrote
//! while it waited returns without touching the gate. Under load this turns
//! thousands of tiny transactions on the hash-chained log into a few large
//! ones; alone, a read costs one transaction as before.
//!
//! The faces' `api_request` events (see `request_audit`) go through the same
//! queue, so under load a read's event and the request events written after
//! earlier responses share one transaction instead of taking turns at
//! SQLite's single writer.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::NewAuditEvent;

type Waiter = oneshot::Sender<bool>;

#[derive(Default)]
pub(crate) struct ReadAudit {
    queue: Mutex<Vec<(Vec<NewAuditEvent>, Waiter)>>,
    gate: tokio::sync::Mutex<()>,
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
            _leader = a.gate.lock() => {
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
                    let (groups, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let events: Vec<NewAuditEvent> = groups.into_iter().flatten().collect();
                    let written = self.write_batch(&events).await;
                    if let Err(e) = &written {
                        tracing::error!(error = ?e, events = events.len(), "could not write read audit events");
                    }
                    let ok = written.is_ok();
                    for w in waiters {
                        let _ = w.send(ok);
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

    async fn write_batch(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut tx = self.store().begin_write().await?;
        tx.audit_only();
        tx.append_audit_batch(events).await?;
        tx.commit().await
    }
}
