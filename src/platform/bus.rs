//! The event bus: generic machinery over any serialisable event type (the application's
//! enum lives in `crate::events`; this module names no event). A domain writes its event
//! into the `outbox` table in the same transaction as the data it describes
//! ([`Bus::publish`]), then calls [`Bus::wake`] after the commit. Each subscriber has a
//! task and a cursor (`bus_cursors`): it gets every event after its cursor, in order, at
//! least once (also after a crash or restart, as the cursor only moves after the handler
//! succeeded), so handlers must be idempotent. The task keeps its cursor in memory and
//! writes it at most once per [`CURSOR_SAVE_INTERVAL`] and when it stops, so a busy outbox
//! costs the database no write per wake; a crash re-delivers at most that interval's events. An event whose handler keeps failing is
//! written to `bus_dead_letters` with the error, never dropped silently. Live listeners
//! ([`Bus::listen`]) get every committed event and every [`Bus::emit`] at once. The bus
//! holds no business rules.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use super::db::{Db, now};

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

/// Dead letters: events a subscriber's handler failed on every attempt.
pub mod dead_letter {
    use sea_orm::entity::prelude::*;

    /// One event one subscriber gave up on, kept for an operator to look at and replay.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bus_dead_letters")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The subscriber that failed.
        pub subscriber: String,
        /// The outbox id of the event.
        pub outbox_id: i64,
        /// The event as JSON.
        pub event: String,
        /// The last error.
        pub error: String,
        /// When it was given up (Unix seconds).
        pub failed_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What a handler returns when it failed: any error, with its sources.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A subscriber's handler: returns an error to have the event retried.
pub type Handler<E> = Arc<dyn Fn(E) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// What can travel on the bus: serialisable, cloneable events.
pub trait BusEvent: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static> BusEvent for T {}

/// Attempts before an event that keeps failing goes to the dead letters for a subscriber.
const MAX_ATTEMPTS: u32 = 8;

/// How long one handler call may take before it counts as a failed attempt.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// The most outbox events a subscriber (or the live forwarder) reads at once.
const DRAIN_PAGE: u64 = 200;

/// How long a woken subscriber waits for more commits before it reads the outbox, so a
/// busy store costs one read per gather instead of one per commit.
const DRAIN_GATHER: Duration = Duration::from_millis(20);

/// How often a busy subscriber writes its cursor to `bus_cursors`.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The most events one outbox insert carries.
pub const PUBLISH_CHUNK: usize = 200;

/// How many live events a slow listener may fall behind before it misses some.
const LIVE_BACKLOG: usize = 4096;

/// The bus over events of type `E`.
pub struct Bus<E> {
    db: Db,
    notify: Arc<Notify>,
    live: tokio::sync::broadcast::Sender<E>,
    /// The outbox id up to which committed events were sent to live listeners.
    live_cursor: Arc<tokio::sync::Mutex<i64>>,
    /// The first retry delay of a failing handler, doubled per attempt.
    retry_delay: Duration,
    /// How long one handler call may take.
    handler_timeout: Duration,
    _event: PhantomData<fn() -> E>,
}

impl<E> Clone for Bus<E> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            notify: self.notify.clone(),
            live: self.live.clone(),
            live_cursor: self.live_cursor.clone(),
            retry_delay: self.retry_delay,
            handler_timeout: self.handler_timeout,
            _event: PhantomData,
        }
    }
}

impl<E: BusEvent> Bus<E> {
    /// A bus over the outbox in `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            notify: Arc::new(Notify::new()),
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
            live_cursor: Arc::new(tokio::sync::Mutex::new(-1)),
            retry_delay: Duration::from_millis(50),
            handler_timeout: HANDLER_TIMEOUT,
            _event: PhantomData,
        }
    }

    /// The same bus with another first retry delay for failing handlers.
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The same bus with another time limit per handler call.
    pub fn with_handler_timeout(mut self, limit: Duration) -> Self {
        self.handler_timeout = limit;
        self
    }

    /// Sends an event that need not survive a crash (streaming) to current listeners only.
    pub fn emit(&self, event: E) {
        metrics::counter!("postcast_bus_emitted_total").increment(1);
        let _ = self.live.send(event);
    }

    /// Listens to events as they happen: every [`Bus::emit`], and every outbox event
    /// committed after this call once [`Bus::wake`] follows its commit. A listener that
    /// falls more than a few thousand events behind is told it lagged (and should re-read
    /// its state).
    pub async fn listen(&self) -> Result<tokio::sync::broadcast::Receiver<E>, DbErr> {
        let mut cursor = self.live_cursor.lock().await;
        // With nobody listening nothing was forwarded: start from what is committed now,
        // not from where the last listener left off.
        if *cursor < 0 || self.live.receiver_count() == 0 {
            *cursor = self.last_outbox_id().await?;
        }
        Ok(self.live.subscribe())
    }

    async fn last_outbox_id(&self) -> Result<i64, DbErr> {
        let last = outbox::Entity::find().order_by_desc(outbox::Column::Id).one(&self.db).await?;
        Ok(last.map(|r| r.id).unwrap_or(0))
    }

    /// Writes `event` to the outbox on `conn`, normally the caller's open transaction, so
    /// the event exists exactly when the data does. Call [`Bus::wake`] after the commit.
    pub async fn publish<C: ConnectionTrait>(conn: &C, event: &E) -> Result<(), DbErr> {
        Self::publish_many(conn, std::slice::from_ref(event)).await
    }

    /// [`Bus::publish`] for several events, in order, with one multi-row insert per
    /// [`PUBLISH_CHUNK`] events.
    pub async fn publish_many<C: ConnectionTrait>(conn: &C, events: &[E]) -> Result<(), DbErr> {
        let at = now();
        for chunk in events.chunks(PUBLISH_CHUNK) {
            let rows = chunk
                .iter()
                .map(|event| {
                    let json = serde_json::to_string(event).map_err(|e| DbErr::Custom(e.to_string()))?;
                    Ok(outbox::ActiveModel { id: NotSet, event: Set(json), created_at: Set(at) })
                })
                .collect::<Result<Vec<_>, DbErr>>()?;
            outbox::Entity::insert_many(rows).exec_without_returning(conn).await?;
        }
        Ok(())
    }

    /// Tells the subscribers that committed events are waiting, and hands the new ones to
    /// the live listeners.
    pub fn wake(&self) {
        self.notify.notify_waiters();
        if self.live.receiver_count() > 0 {
            let bus = self.clone();
            tokio::spawn(async move {
                if let Err(e) = bus.forward_live().await {
                    tracing::warn!(error = %e, "live event forwarding failed");
                }
            });
        }
    }

    /// Sends the committed events after the live cursor to the live listeners, in order.
    async fn forward_live(&self) -> Result<(), DbErr> {
        let mut cursor = self.live_cursor.lock().await;
        if *cursor < 0 {
            // Nobody listened before: nothing to forward.
            return Ok(());
        }
        loop {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::Id.gt(*cursor))
                .order_by_asc(outbox::Column::Id)
                .limit(DRAIN_PAGE)
                .all(&self.db)
                .await?;
            let Some(last) = rows.last().map(|r| r.id) else { return Ok(()) };
            for row in rows {
                if let Ok(event) = serde_json::from_str::<E>(&row.event) {
                    let _ = self.live.send(event);
                }
            }
            *cursor = last;
        }
    }

    /// Starts a subscriber task that runs `handler` for every event after its stored
    /// cursor (so events missed before a crash are replayed) until `shutdown` turns true.
    pub fn subscribe(
        &self,
        name: &'static str,
        handler: Handler<E>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let Some(mut last) = bus.load_cursor(name, &mut shutdown).await else { return };
            let (mut saved, mut saved_at) = (last, tokio::time::Instant::now());
            loop {
                let notified = bus.notify.notified();
                if let Err(e) = bus.drain(name, &handler, &mut last, &mut shutdown).await {
                    tracing::warn!(subscriber = name, error = %e, "bus delivery failed");
                }
                let stopping = *shutdown.borrow();
                if last != saved && (stopping || saved_at.elapsed() >= CURSOR_SAVE_INTERVAL) {
                    match bus.save_cursor(name, last).await {
                        Ok(()) => (saved, saved_at) = (last, tokio::time::Instant::now()),
                        Err(e) => tracing::warn!(subscriber = name, error = %e, "bus cursor not saved"),
                    }
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    // Commits arriving meanwhile are read with this one, in one query.
                    _ = notified => tokio::time::sleep(DRAIN_GATHER).await,
                    // A safety net for wakes lost between commit and notify, and the moment
                    // a cursor left unsaved by a burst is written.
                    _ = tokio::time::sleep(CURSOR_SAVE_INTERVAL) => {}
                    // Loops once more to save the cursor, then returns.
                    _ = shutdown.changed() => {}
                }
            }
        })
    }

    /// Reads the subscriber's saved cursor, retrying while the database fails; `None` when
    /// told to stop first.
    async fn load_cursor(&self, name: &'static str, shutdown: &mut watch::Receiver<bool>) -> Option<i64> {
        loop {
            match cursor::Entity::find_by_id(name.to_owned()).one(&self.db).await {
                Ok(row) => return Some(row.map(|c| c.last_id).unwrap_or(0)),
                Err(e) => tracing::warn!(subscriber = name, error = %e, "bus cursor unreadable; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(CURSOR_SAVE_INTERVAL) => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// Hands every event after `last` to the subscriber's handler, a page at a time,
    /// moving `last` past each handled event; stops early when told to shut down.
    async fn drain(
        &self,
        name: &'static str,
        handler: &Handler<E>,
        last: &mut i64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), DbErr> {
        loop {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::Id.gt(*last))
                .order_by_asc(outbox::Column::Id)
                .limit(DRAIN_PAGE)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                if *shutdown.borrow() {
                    break;
                }
                self.deliver(name, handler, &row).await?;
                *last = row.id;
            }
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    /// Records that `name` has handled every event up to `last`.
    async fn save_cursor(&self, name: &'static str, last: i64) -> Result<(), DbErr> {
        let c = cursor::ActiveModel { subscriber: Set(name.to_owned()), last_id: Set(last) };
        cursor::Entity::insert(c)
            .on_conflict(
                OnConflict::column(cursor::Column::Subscriber).update_column(cursor::Column::LastId).to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn deliver(&self, name: &'static str, handler: &Handler<E>, row: &outbox::Model) -> Result<(), DbErr> {
        let event: E = match serde_json::from_str(&row.event) {
            Ok(e) => e,
            Err(e) => {
                // An event from a newer or older version this build cannot read.
                tracing::error!(subscriber = name, id = row.id, error = %e, "unreadable event skipped");
                metrics::counter!("postcast_bus_skipped_total", "subscriber" => name).increment(1);
                return self.dead_letter(name, row, &e.to_string()).await;
            }
        };
        let mut delay = self.retry_delay;
        for attempt in 1..=MAX_ATTEMPTS {
            match self.call(handler, event.clone()).await {
                Ok(()) => {
                    metrics::counter!("postcast_bus_delivered_total", "subscriber" => name).increment(1);
                    return Ok(());
                }
                Err(e) if attempt == MAX_ATTEMPTS => {
                    tracing::error!(subscriber = name, id = row.id, error = %e, "event dead-lettered after {MAX_ATTEMPTS} attempts");
                    metrics::counter!("postcast_bus_dead_letters_total", "subscriber" => name).increment(1);
                    return self.dead_letter(name, row, &e.to_string()).await;
                }
                Err(e) => {
                    tracing::warn!(subscriber = name, id = row.id, attempt, error = %e, "event handler failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        Ok(())
    }

    /// Runs `handler` on `event` within the handler time limit.
    async fn call(&self, handler: &Handler<E>, event: E) -> Result<(), HandlerError> {
        match tokio::time::timeout(self.handler_timeout, handler(event)).await {
            Ok(result) => result,
            Err(_) => Err(format!("the handler took longer than {:?}", self.handler_timeout).into()),
        }
    }

    /// The events subscribers gave up on, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<dead_letter::Model>, DbErr> {
        dead_letter::Entity::find().order_by_asc(dead_letter::Column::Id).all(&self.db).await
    }

    /// Hands the dead letter `id` (or every one, with `None`) once more to its subscriber's
    /// handler among `handlers`; a letter whose handler now succeeds is deleted, one that
    /// fails again keeps the new error. Returns how many succeeded and how many failed.
    pub async fn retry_dead_letters(
        &self,
        id: Option<i64>,
        handlers: &[(&'static str, Handler<E>)],
    ) -> Result<(usize, usize), DbErr> {
        let mut find = dead_letter::Entity::find().order_by_asc(dead_letter::Column::Id);
        if let Some(id) = id {
            find = find.filter(dead_letter::Column::Id.eq(id));
        }
        let (mut done, mut failed) = (0, 0);
        for letter in find.all(&self.db).await? {
            let handler = handlers.iter().find(|(name, _)| *name == letter.subscriber).map(|(_, h)| h);
            let outcome = match (handler, serde_json::from_str::<E>(&letter.event)) {
                (None, _) => Err(format!("no subscriber named {:?}", letter.subscriber)),
                (_, Err(e)) => Err(format!("unreadable event: {e}")),
                (Some(h), Ok(event)) => self.call(h, event).await.map_err(|e| e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    dead_letter::Entity::delete_by_id(letter.id).exec(&self.db).await?;
                    done += 1;
                }
                Err(error) => {
                    let mut row: dead_letter::ActiveModel = letter.into();
                    row.error = Set(error);
                    row.failed_at = Set(now());
                    dead_letter::Entity::update(row).exec(&self.db).await?;
                    failed += 1;
                }
            }
        }
        Ok((done, failed))
    }

    /// Keeps an event a subscriber gave up on, with the reason.
    async fn dead_letter(&self, name: &'static str, row: &outbox::Model, error: &str) -> Result<(), DbErr> {
        let letter = dead_letter::ActiveModel {
            id: NotSet,
            subscriber: Set(name.to_owned()),
            outbox_id: Set(row.id),
            event: Set(row.event.clone()),
            error: Set(error.to_owned()),
            failed_at: Set(now()),
        };
        dead_letter::Entity::insert(letter).exec(&self.db).await?;
        Ok(())
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
    use serde::Deserialize;
    use tokio::sync::mpsc;

    /// A stand-in event type: the bus must work for any.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    enum Event {
        UserDisabled { user_id: i64 },
    }

    type Bus = super::Bus<Event>;
    type Handler = super::Handler<Event>;

    async fn db(dir: &std::path::Path) -> Db {
        let url = format!("sqlite://{}?mode=rwc", dir.join("bus.db").display());
        crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap()
    }

    fn recorder(tx: mpsc::UnboundedSender<Event>) -> Handler {
        Arc::new(move |e| {
            let tx = tx.clone();
            Box::pin(async move {
                tx.send(e)?;
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
    async fn a_running_subscriber_saves_its_cursor_after_a_burst() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        let bus = Bus::new(db.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = bus.subscribe("t", recorder(tx), stop_rx);
        for user_id in 0..20 {
            Bus::publish(&db, &Event::UserDisabled { user_id }).await.unwrap();
            bus.wake();
        }
        for _ in 0..20 {
            rx.recv().await.unwrap();
        }
        // No stop: the deferred save lands within about one interval.
        let saved = async {
            loop {
                let c = cursor::Entity::find_by_id("t".to_owned()).one(&db).await.unwrap();
                if c.is_some_and(|c| c.last_id == 20) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(CURSOR_SAVE_INTERVAL * 5, saved).await.expect("cursor saved while running");
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
        let later: Vec<Event> = (2..5).map(|user_id| Event::UserDisabled { user_id }).collect();
        Bus::publish_many(&db, &later).await.unwrap();
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

    #[tokio::test]
    async fn a_hanging_handler_times_out_into_the_dead_letters_and_a_retry_delivers_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        let bus = Bus::new(db.clone())
            .with_retry_delay(Duration::from_millis(1))
            .with_handler_timeout(Duration::from_millis(20));
        Bus::publish(&db, &Event::UserDisabled { user_id: 1 }).await.unwrap();
        Bus::publish(&db, &Event::UserDisabled { user_id: 2 }).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stuck_on_one: Handler = Arc::new(move |e| {
            let tx = tx.clone();
            Box::pin(async move {
                if e == (Event::UserDisabled { user_id: 1 }) {
                    futures::future::pending::<()>().await;
                }
                tx.send(e)?;
                Ok(())
            })
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = bus.subscribe("stuck", stuck_on_one, stop_rx);
        assert_eq!(rx.recv().await.unwrap(), Event::UserDisabled { user_id: 2 }, "the bus moved past the hang");
        stop.send(true).unwrap();
        task.await.unwrap();
        let letters = bus.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 1);
        assert!(letters[0].error.contains("took longer than"), "{}", letters[0].error);
        // A retry with a handler for an unknown name fails and keeps the letter...
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert_eq!(bus.retry_dead_letters(None, &[("other", recorder(tx.clone()))]).await.unwrap(), (0, 1));
        assert_eq!(bus.dead_letters().await.unwrap().len(), 1);
        // ...one with the subscriber's (now working) handler delivers it and drops the letter.
        let id = letters[0].id;
        assert_eq!(bus.retry_dead_letters(Some(id), &[("stuck", recorder(tx))]).await.unwrap(), (1, 0));
        assert_eq!(rx.recv().await.unwrap(), Event::UserDisabled { user_id: 1 });
        assert!(bus.dead_letters().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failing_handler_dead_letters_the_event_and_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        let bus = Bus::new(db.clone()).with_retry_delay(Duration::from_millis(1));
        Bus::publish(&db, &Event::UserDisabled { user_id: 1 }).await.unwrap();
        Bus::publish(&db, &Event::UserDisabled { user_id: 2 }).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let picky: Handler = Arc::new(move |e| {
            let tx = tx.clone();
            Box::pin(async move {
                if e == (Event::UserDisabled { user_id: 1 }) {
                    return Err("refused".into());
                }
                tx.send(e)?;
                Ok(())
            })
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = bus.subscribe("picky", picky, stop_rx);
        assert_eq!(rx.recv().await.unwrap(), Event::UserDisabled { user_id: 2 });
        stop.send(true).unwrap();
        task.await.unwrap();
        let letters = dead_letter::Entity::find().all(&db).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].subscriber.as_str(), letters[0].error.as_str()), ("picky", "refused"));
        let kept: Event = serde_json::from_str(&letters[0].event).unwrap();
        assert_eq!(kept, Event::UserDisabled { user_id: 1 });
    }

    #[tokio::test]
    async fn live_listeners_get_events_committed_after_they_listen() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        let bus = Bus::new(db.clone());
        Bus::publish(&db, &Event::UserDisabled { user_id: 1 }).await.unwrap();
        let mut live = bus.listen().await.unwrap();
        let txn = db.begin().await.unwrap();
        Bus::publish(&txn, &Event::UserDisabled { user_id: 2 }).await.unwrap();
        Bus::publish(&txn, &Event::UserDisabled { user_id: 3 }).await.unwrap();
        txn.commit().await.unwrap();
        bus.wake();
        let got = tokio::time::timeout(Duration::from_secs(1), live.recv()).await.unwrap().unwrap();
        assert_eq!(got, Event::UserDisabled { user_id: 2 }, "the event before listen() is not replayed");
        let got = tokio::time::timeout(Duration::from_secs(1), live.recv()).await.unwrap().unwrap();
        assert_eq!(got, Event::UserDisabled { user_id: 3 });
        drop(live);
        // Committed while nobody listens: a later listener does not get it either.
        Bus::publish(&db, &Event::UserDisabled { user_id: 4 }).await.unwrap();
        bus.wake();
        let mut again = bus.listen().await.unwrap();
        Bus::publish(&db, &Event::UserDisabled { user_id: 5 }).await.unwrap();
        bus.wake();
        let got = tokio::time::timeout(Duration::from_secs(1), again.recv()).await.unwrap().unwrap();
        assert_eq!(got, Event::UserDisabled { user_id: 5 });
    }
}
