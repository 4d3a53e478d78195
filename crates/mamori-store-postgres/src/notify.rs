//! LISTEN/NOTIFY: the changes other instances commit (policies, collection keys, the master
//! key) reach this one as they commit, not at its next poll.
//!
//! One dedicated connection per process LISTENs on [`CHANNEL`]; the triggers of migration
//! `20261208000000_change_notifications` NOTIFY it. When the connection drops, it reconnects
//! with backoff and then announces [`Change::Everything`], because whatever was committed
//! while nobody listened is lost to LISTEN.

use mamori_store::Change;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Config, NoTls};

pub(crate) const CHANNEL: &str = "mamori_changes";

/// The listening task; stopped when the last clone of the store lets go of it.
pub(crate) struct Listener {
    sender: broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub(crate) fn start(config: Config, schema: String) -> Self {
        let (sender, _) = broadcast::channel(64);
        let task = tokio::spawn(listen(config, schema, sender.clone()));
        Self { sender, task }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

async fn listen(config: Config, schema: String, sender: broadcast::Sender<Change>) {
    const FIRST_RETRY: Duration = Duration::from_millis(250);
    let mut retry = FIRST_RETRY;
    loop {
        match listen_once(&config, &schema, &sender).await {
            // It worked for a while: retry soon.
            Ok(()) => retry = FIRST_RETRY,
            Err(e) => tracing::warn!(error = %e, "change notifications: no connection; caches fall back to polling"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(30));
    }
}

/// Listens until the connection ends.
async fn listen_once(
    config: &Config,
    schema: &str,
    sender: &broadcast::Sender<Change>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (payloads, mut received) = mpsc::unbounded_channel::<String>();
    // The connection must be polled for the client's own queries to progress, and it is
    // where notifications arrive; it ends when the client is dropped or the server goes.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if payloads.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return Err(e);
    }
    // Anything may have changed while nobody listened.
    let _ = sender.send(Change::Everything);
    while let Some(payload) = received.recv().await {
        if let Some(change) = parse(&payload, schema) {
            // No receiver right now is not an error: nobody caches anything yet.
            let _ = sender.send(change);
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// `<schema> <what>`, for this schema only.
fn parse(payload: &str, schema: &str) -> Option<Change> {
    let (from, name) = payload.split_once(' ')?;
    if from != schema {
        return None;
    }
    Change::from_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse("public policy", "public"), Some(Change::Policy));
        assert_eq!(parse("public master_key", "public"), Some(Change::MasterKey));
        assert_eq!(parse("other collections", "public"), None, "another installation's change");
        assert_eq!(parse("public something_new", "public"), None);
        assert_eq!(parse("garbage", "public"), None);
    }
}
