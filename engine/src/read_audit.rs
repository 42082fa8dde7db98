//! Group commit of read operations' audit events. Every read is audited
//! before its call returns, but concurrent reads share one write transaction:
//! each caller queues its event and waits for the gate; whoever holds the
//! gate writes everything queued so far and tells each waiter how it went.
//! Under load this turns thousands of tiny transactions on the hash-chained
//! log into a few large ones; alone, a read costs one transaction as before.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::NewAuditEvent;

type Waiter = oneshot::Sender<bool>;

#[derive(Default)]
pub(crate) struct ReadAudit {
    queue: Mutex<Vec<(NewAuditEvent, Waiter)>>,
    gate: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Appends a read's audit event; returns once it is committed.
    pub(crate) async fn append_read_audit(&self, event: NewAuditEvent) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let a = self.read_audit();
        a.queue
            .lock()
            .map_err(|_| Error::internal("audit queue poisoned"))?
            .push((event, done));
        {
            let _leader = a.gate.lock().await;
            let batch = std::mem::take(
                &mut *a
                    .queue
                    .lock()
                    .map_err(|_| Error::internal("audit queue poisoned"))?,
            );
            if !batch.is_empty() {
                let written = self.write_batch(&batch).await;
                if let Err(e) = &written {
                    tracing::error!(error = ?e, events = batch.len(), "could not write read audit events");
                }
                let ok = written.is_ok();
                for (_, w) in batch {
                    let _ = w.send(ok);
                }
            }
        }
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(Error::internal(
                "the audit event of this read could not be written",
            )),
        }
    }

    async fn write_batch(&self, batch: &[(NewAuditEvent, Waiter)]) -> Result<()> {
        let mut tx = self.store().begin_write().await?;
        for (e, _) in batch {
            tx.append_audit(e).await?;
        }
        tx.commit().await
    }
}
