//! What a user's mail takes against the storage quota: the size of every message they
//! keep (each copy counts, as the user sees it) and of the attachments they uploaded for
//! messages not sent yet.

use futures::future::BoxFuture;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::MailService;
use super::entities::{message, upload};
use crate::platform::db::sum_bigint;
use crate::platform::quota::UsageSource;

impl UsageSource for MailService {
    fn bytes_used(&self, user_id: i64) -> BoxFuture<'_, Result<u64, DbErr>> {
        Box::pin(async move {
            let mail: Option<i64> = message::Entity::find()
                .select_only()
                .column_as(sum_bigint(message::Column::Size), "total")
                .filter(message::Column::UserId.eq(user_id))
                .into_tuple()
                .one(self.db())
                .await?
                .flatten();
            let uploads: Option<i64> = upload::Entity::find()
                .select_only()
                .column_as(sum_bigint(upload::Column::Size), "total")
                .filter(upload::Column::UserId.eq(user_id))
                .into_tuple()
                .one(self.db())
                .await?
                .flatten();
            Ok(u64::try_from(mail.unwrap_or(0)).unwrap_or(0) + u64::try_from(uploads.unwrap_or(0)).unwrap_or(0))
        })
    }
}
