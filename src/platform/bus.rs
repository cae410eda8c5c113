//! The event bus: one typed `Event` enum and a durable outbox. A domain writes its event
//! into the `outbox` table in the same transaction as the data it describes
//! ([`Bus::publish`]), then calls [`Bus::wake`] after the commit. Each subscriber has a
//! task and a cursor (`bus_cursors`): it gets every event after its cursor, in order, at
//! least once (also after a crash or restart, as the cursor only moves after the handler
//! succeeded), so handlers must be idempotent. The bus holds no business rules.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::db::{Db, now};

/// Everything that happens and that another module may care about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A new account exists.
    UserRegistered {
        /// The account.
        user_id: i64,
        /// Its login name.
        username: String,
    },
    /// An account was disabled: its sessions are gone.
    UserDisabled {
        /// The account.
        user_id: i64,
    },
    /// A user's preference document changed.
    PrefsChanged {
        /// The owner.
        user_id: i64,
    },
    /// A message was stored in a user's mailbox (received, sent copy, imported or drafted).
    MailStored {
        /// The owner.
        user_id: i64,
        /// The stored message's row id.
        message_id: i64,
        /// The mailbox it landed in.
        mailbox_id: i64,
    },
    /// A user sent a message (web compose or SMTP submission): it is in Sent and on its way.
    MailSent {
        /// The sender.
        user_id: i64,
        /// The row id of the copy in Sent.
        message_id: i64,
        /// Every recipient address (To, Cc and Bcc, after group expansion), lower-cased.
        recipients: Vec<String>,
    },
    /// A stream went live (in-memory only: see [`Bus::emit`]).
    StreamStarted {
        /// The stream.
        stream_id: String,
        /// Its owner.
        user_id: i64,
    },
    /// A stream ended and is now a recording (in-memory only).
    StreamEnded {
        /// The stream.
        stream_id: String,
    },
}

/// Outbox rows.
pub mod outbox {
    use sea_orm::entity::prelude::*;

    /// One event waiting for (or kept for) its subscribers.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Order of publication.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The event as JSON.
        pub event: String,
        /// When it was published (Unix seconds).
        pub created_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Subscriber cursors.
pub mod cursor {
    use sea_orm::entity::prelude::*;

    /// How far one subscriber got.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bus_cursors")]
    pub struct Model {
        /// The subscriber's stable name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscriber: String,
        /// The last outbox id it handled.
        pub last_id: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A subscriber's handler: returns an error to have the event retried.
pub type Handler = Arc<dyn Fn(Event) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Attempts before an event that keeps failing is skipped (and counted) for a subscriber.
const MAX_ATTEMPTS: u32 = 8;

/// The bus.
#[derive(Clone)]
pub struct Bus {
    db: Db,
    notify: Arc<Notify>,
    live: tokio::sync::broadcast::Sender<Event>,
}

impl Bus {
    /// A bus over the outbox in `db`.
    pub fn new(db: Db) -> Self {
        Self { db, notify: Arc::new(Notify::new()), live: tokio::sync::broadcast::channel(1024).0 }
    }

    /// Sends an event that need not survive a crash (streaming) to current listeners only.
    pub fn emit(&self, event: Event) {
        metrics::counter!("postcast_bus_emitted_total").increment(1);
        let _ = self.live.send(event);
    }

    /// Listens to the in-memory events of [`Bus::emit`].
    pub fn listen(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Writes `event` to the outbox on `conn`, normally the caller's open transaction, so
    /// the event exists exactly when the data does. Call [`Bus::wake`] after the commit.
    pub async fn publish<C: ConnectionTrait>(conn: &C, event: &Event) -> Result<(), DbErr> {
        let json = serde_json::to_string(event).map_err(|e| DbErr::Custom(e.to_string()))?;
        let row = outbox::ActiveModel { id: NotSet, event: Set(json), created_at: Set(now()) };
        outbox::Entity::insert(row).exec(conn).await?;
        Ok(())
    }

    /// Tells the subscribers that committed events are waiting.
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Starts a subscriber task that runs `handler` for every event after its stored
    /// cursor (so events missed before a crash are replayed) until `shutdown` turns true.
    pub fn subscribe(
        &self,
        name: &'static str,
        handler: Handler,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            loop {
                let notified = bus.notify.notified();
                match bus.drain(name, &handler, &mut shutdown).await {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(subscriber = name, error = %e, "bus delivery failed"),
                }
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = notified => {}
                    // A safety net for wakes lost between commit and notify.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    async fn drain(
        &self,
        name: &'static str,
        handler: &Handler,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), DbErr> {
        let mut last = cursor::Entity::find_by_id(name.to_owned()).one(&self.db).await?.map(|c| c.last_id).unwrap_or(0);
        loop {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::Id.gt(last))
                .order_by_asc(outbox::Column::Id)
                .limit(100)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                if *shutdown.borrow() {
                    return Ok(());
                }
                self.deliver(name, handler, &row).await;
                last = row.id;
                let c = cursor::ActiveModel { subscriber: Set(name.to_owned()), last_id: Set(last) };
                cursor::Entity::insert(c)
                    .on_conflict(
                        OnConflict::column(cursor::Column::Subscriber).update_column(cursor::Column::LastId).to_owned(),
                    )
                    .exec(&self.db)
                    .await?;
            }
        }
    }

    async fn deliver(&self, name: &'static str, handler: &Handler, row: &outbox::Model) {
        let event: Event = match serde_json::from_str(&row.event) {
            Ok(e) => e,
            Err(e) => {
                // An event from a newer or older version this build cannot read.
                tracing::error!(subscriber = name, id = row.id, error = %e, "unreadable event skipped");
                metrics::counter!("postcast_bus_skipped_total", "subscriber" => name).increment(1);
                return;
            }
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=MAX_ATTEMPTS {
            match handler(event.clone()).await {
                Ok(()) => {
                    metrics::counter!("postcast_bus_delivered_total", "subscriber" => name).increment(1);
                    return;
                }
                Err(e) => {
                    tracing::warn!(subscriber = name, id = row.id, attempt, error = %e, "event handler failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        tracing::error!(subscriber = name, id = row.id, "event skipped after {MAX_ATTEMPTS} attempts");
        metrics::counter!("postcast_bus_skipped_total", "subscriber" => name).increment(1);
    }

    /// Deletes outbox rows that every known subscriber has handled.
    pub async fn prune(&self) -> Result<u64, DbErr> {
        let min = cursor::Entity::find()
            .order_by_asc(cursor::Column::LastId)
            .one(&self.db)
            .await?
            .map(|c| c.last_id)
            .unwrap_or(0);
        let res = outbox::Entity::delete_many().filter(outbox::Column::Id.lte(min)).exec(&self.db).await?;
        Ok(res.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::TransactionTrait;
    use tokio::sync::mpsc;

    async fn db(dir: &std::path::Path) -> Db {
        let url = format!("sqlite://{}?mode=rwc", dir.join("bus.db").display());
        crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap()
    }

    fn recorder(tx: mpsc::UnboundedSender<Event>) -> Handler {
        Arc::new(move |e| {
            let tx = tx.clone();
            Box::pin(async move {
                tx.send(e).map_err(|e| e.to_string())?;
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn an_event_cut_off_by_a_restart_is_delivered_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let ev = Event::UserDisabled { user_id: 7 };
        {
            // First life: the event is committed, and the only subscriber hangs in its
            // handler, so the delivery never completes before the "crash".
            let db = db(dir.path()).await;
            let bus = Bus::new(db.clone());
            let txn = db.begin().await.unwrap();
            Bus::publish(&txn, &ev).await.unwrap();
            txn.commit().await.unwrap();
            let (started_tx, mut started) = mpsc::unbounded_channel();
            let hang: Handler = Arc::new(move |_| {
                let started_tx = started_tx.clone();
                Box::pin(async move {
                    let _ = started_tx.send(());
                    futures::future::pending::<()>().await;
                    Ok(())
                })
            });
            let (_stop, rx) = watch::channel(false);
            let task = bus.subscribe("indexer", hang, rx);
            bus.wake();
            started.recv().await.unwrap();
            task.abort(); // the process dies mid-delivery
            let _ = task.await;
            db.close().await.unwrap();
        }
        // Second life: the same subscriber gets the event.
        let db = db(dir.path()).await;
        let bus = Bus::new(db);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = bus.subscribe("indexer", recorder(tx), stop_rx);
        assert_eq!(rx.recv().await.unwrap(), ev);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn rolled_back_events_are_never_delivered_and_order_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        let bus = Bus::new(db.clone());
        let txn = db.begin().await.unwrap();
        Bus::publish(&txn, &Event::UserDisabled { user_id: 1 }).await.unwrap();
        txn.rollback().await.unwrap();
        for id in 2..5 {
            Bus::publish(&db, &Event::UserDisabled { user_id: id }).await.unwrap();
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = bus.subscribe("t", recorder(tx), stop_rx);
        bus.wake();
        for id in 2..5 {
            assert_eq!(rx.recv().await.unwrap(), Event::UserDisabled { user_id: id });
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(bus.prune().await.unwrap(), 3);
    }
}
