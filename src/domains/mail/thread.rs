//! Conversation grouping: a message joins the thread of a message it references
//! (References, In-Reply-To), else a recent thread with the same normalised subject and a
//! shared participant, else starts a new one.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set,
};

use super::entities::{message, thread};
use super::parse::Meta;

/// How many recent same-subject threads a message is compared with.
const SUBJECT_CANDIDATES: u64 = 5;

/// The existing thread a new message of `user_id` joins, with its `last_at` moved forward
/// to `at`; `None` when the message starts a new one (see [`create_many`]).
pub(crate) async fn join<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    meta: &Meta,
    at: i64,
) -> Result<Option<i64>, DbErr> {
    let found = match by_reference(conn, user_id, meta).await? {
        Some(id) => Some(id),
        None => by_subject(conn, user_id, meta, &subject_key(&meta.subject), at).await?,
    };
    if let Some(id) = found {
        thread::Entity::update_many()
            .col_expr(thread::Column::LastAt, Func::greatest([Expr::col(thread::Column::LastAt), Expr::val(at)]).into())
            .filter(thread::Column::Id.eq(id))
            .exec(conn)
            .await?;
    }
    Ok(found)
}

/// A thread to create: its owner, subject key and first message's time.
pub(crate) type NewThread = (i64, String, i64);

/// Creates `threads` in multi-row inserts; returns their ids in the same order. Rows are
/// matched back by content, so the order the database returns them in does not matter:
/// two new threads with the same owner, key and time are alike, either id fits either.
pub(crate) async fn create_many<C: ConnectionTrait>(conn: &C, threads: &[NewThread]) -> Result<Vec<i64>, DbErr> {
    use thread::Column as T;
    let mut ids: HashMap<NewThread, Vec<i64>> = HashMap::new();
    for chunk in threads.chunks(CREATE_CHUNK) {
        let rows = chunk.iter().map(|(user_id, key, at)| thread::ActiveModel {
            id: NotSet,
            user_id: Set(*user_id),
            subject_key: Set(key.clone()),
            last_at: Set(*at),
        });
        let mut insert = thread::Entity::insert_many(rows).into_query();
        insert.returning(Query::returning().columns([T::Id, T::UserId, T::SubjectKey, T::LastAt]));
        for r in conn.query_all(&insert).await? {
            let key: NewThread = (r.try_get("", "user_id")?, r.try_get("", "subject_key")?, r.try_get("", "last_at")?);
            ids.entry(key).or_default().push(r.try_get("", "id")?);
        }
    }
    threads.iter().map(|t| ids.get_mut(t).and_then(Vec::pop).ok_or(DbErr::RecordNotInserted)).collect()
}

/// Threads per multi-row insert.
const CREATE_CHUNK: usize = 500;

/// The thread of the newest message this one references (or that references it).
async fn by_reference<C: ConnectionTrait>(conn: &C, user_id: i64, meta: &Meta) -> Result<Option<i64>, DbErr> {
    if meta.references.is_empty() {
        return Ok(None);
    }
    let hit = message::Entity::find()
        .select_only()
        .column(message::Column::ThreadId)
        .filter(message::Column::UserId.eq(user_id))
        .filter(message::Column::MessageIdHdr.is_in(meta.references.iter().rev().take(50).cloned()))
        .order_by_desc(message::Column::InternalDate)
        .into_tuple::<i64>()
        .one(conn)
        .await?;
    Ok(hit)
}

/// A recent thread with the same subject key and at least one shared participant.
async fn by_subject<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    meta: &Meta,
    key: &str,
    at: i64,
) -> Result<Option<i64>, DbErr> {
    if key.is_empty() {
        return Ok(None);
    }
    let candidates: Vec<i64> = thread::Entity::find()
        .select_only()
        .column(thread::Column::Id)
        .filter(thread::Column::UserId.eq(user_id))
        .filter(thread::Column::SubjectKey.eq(key))
        .filter(thread::Column::LastAt.gte(at - SUBJECT_WINDOW_SECONDS))
        .order_by_desc(thread::Column::LastAt)
        .limit(SUBJECT_CANDIDATES)
        .into_tuple()
        .all(conn)
        .await?;
    // The sender and at least one recipient must both already be in the thread: a
    // same-subject message from a stranger, or from the owner to someone new, starts anew.
    let Some(from) = meta.from.as_ref().map(|f| f.address.as_str()) else {
        return Ok(None);
    };
    for id in candidates {
        let people: Vec<(String, String, String)> = message::Entity::find()
            .select_only()
            .columns([message::Column::FromAddr, message::Column::ToAddrs, message::Column::CcAddrs])
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::ThreadId.eq(id))
            .limit(20)
            .into_tuple()
            .all(conn)
            .await?;
        let known: std::collections::HashSet<&str> = people
            .iter()
            .flat_map(|(f, to, cc)| std::iter::once(f.as_str()).chain(to.split(',')).chain(cc.split(',')))
            .filter(|a| !a.is_empty())
            .collect();
        let shared = known.contains(from) && meta.to.iter().chain(&meta.cc).any(|r| known.contains(r.address.as_str()));
        if shared {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// How far back a subject-only match may reach, in seconds (Gmail uses a few weeks).
pub const SUBJECT_WINDOW_SECONDS: i64 = 30 * 24 * 3600;

/// The subject with reply and forward prefixes, list tags and case removed: the key that
/// "Re: [list] Hello" and "hello" share.
pub fn subject_key(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let before = s;
        if let Some(rest) = s.strip_prefix('[').and_then(|r| r.split_once(']').map(|(_, rest)| rest)) {
            s = rest.trim_start();
        }
        for prefix in ["re", "fw", "fwd", "aw", "sv", "wg", "tr", "rif", "vs"] {
            if s.len() > prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
                let rest = &s[prefix.len()..];
                // "Re:", "RE :", "Re[2]:"
                let rest = rest.trim_start_matches(|c: char| c == ' ' || c.is_ascii_digit() || c == '[' || c == ']');
                if let Some(rest) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：')) {
                    s = rest.trim_start();
                    break;
                }
            }
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_and_forward_prefixes_and_list_tags_are_dropped() {
        for s in [
            "Hello  World",
            "Re: Hello World",
            "RE: re: Fwd: hello world",
            "[dev] Re[2]: Hello world",
            "AW: Hello World",
        ] {
            assert_eq!(subject_key(s), "hello world", "{s}");
        }
        assert_eq!(subject_key("Re:"), "");
        assert_eq!(subject_key("Return of the king"), "return of the king");
        assert_eq!(subject_key(""), "");
    }
}
