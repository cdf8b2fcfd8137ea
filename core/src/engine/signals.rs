//! In-process wake-ups. Local events (this process enqueued, finished a task) are published
//! directly; on PostgreSQL, NOTIFYs from other processes are forwarded into the same hub.

use tokio::sync::broadcast;

use crate::store::RemoteSignal;

/// Subscribers receive every signal; a lagging subscriber just sees `Lagged` and treats it as
/// "something happened".
#[derive(Debug, Clone)]
pub(crate) struct SignalHub {
    tx: broadcast::Sender<RemoteSignal>,
}

impl SignalHub {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    pub(crate) fn publish(&self, signal: RemoteSignal) {
        // No subscriber is fine: nobody is waiting.
        let _ = self.tx.send(signal);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<RemoteSignal> {
        self.tx.subscribe()
    }

    /// Forwards a backend's cross-process signals into this hub until the backend closes.
    pub(crate) fn forward(&self, mut remote: broadcast::Receiver<RemoteSignal>) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                match remote.recv().await {
                    Ok(s) => {
                        let _ = tx.send(s);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(RemoteSignal::Reconnected);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
}
