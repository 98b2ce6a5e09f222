//! The live status stream: a watcher gets an opening view of the executions
//! in scope, then every change, and can resume after the last sequence it
//! saw.

use tokio::sync::mpsc;

use super::UseCases;
use crate::scheduling::store::events;
use crate::scheduling::watch::{self, WatchMessage, WatchScope};
use crate::scheduling::Error;

/// Messages a watcher may have unread before its session waits for it.
const WATCH_BUFFER: usize = 64;

impl UseCases {
    /// Opens a watcher's session; its messages arrive on the receiver until
    /// the watcher drops it or the service shuts down. Resuming after a
    /// sequence the client never reached is OUT_OF_RANGE (a watcher holding
    /// a position from another database, or a typo, would otherwise wait
    /// silently).
    pub async fn watch_executions(
        &self,
        scope: WatchScope,
    ) -> Result<mpsc::Receiver<WatchMessage>, Error> {
        if scope.business_date.is_some() && scope.config_id.is_none() {
            return Err(Error::invalid("config_id", "required with business_date"));
        }
        if scope.after_sequence > 0 {
            let mut conn = self.conn().await?;
            let (_, last) = events::bounds(&mut conn, &scope.client_id).await?;
            let last = last.unwrap_or(0);
            if scope.after_sequence > last {
                return Err(Error::out_of_range(
                    "after_sequence",
                    format!("beyond the client's latest sequence {last}"),
                ));
            }
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (engine, hub, shutdown) =
            (self.engine.clone(), self.hub.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = watch::run(engine, hub, scope, tx, shutdown).await {
                tracing::warn!(error = %e, "watcher ended with an error");
            }
        });
        Ok(rx)
    }
}
