//! What a user's streams take against the storage quota: the raw chunks kept as a backup
//! and the HLS segments of every rendition, of all their streams (live ones and
//! recordings).

use futures::future::BoxFuture;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::StreamService;
use super::entities::{stream, stream_chunk, stream_segment};
use crate::platform::db::sum_bigint;
use crate::platform::quota::UsageSource;

impl UsageSource for StreamService {
    fn bytes_used(&self, user_id: i64) -> BoxFuture<'_, Result<u64, DbErr>> {
        Box::pin(async move {
            let streams = || {
                Query::select()
                    .column(stream::Column::Id)
                    .from(stream::Entity)
                    .and_where(stream::Column::UserId.eq(user_id))
                    .to_owned()
            };
            let chunks: Option<i64> = stream_chunk::Entity::find()
                .select_only()
                .column_as(sum_bigint(stream_chunk::Column::Bytes), "total")
                .filter(stream_chunk::Column::StreamId.in_subquery(streams()))
                .into_tuple()
                .one(&self.inner.db)
                .await?
                .flatten();
            let segments: Option<i64> = stream_segment::Entity::find()
                .select_only()
                .column_as(sum_bigint(stream_segment::Column::Bytes), "total")
                .filter(stream_segment::Column::StreamId.in_subquery(streams()))
                .into_tuple()
                .one(&self.inner.db)
                .await?
                .flatten();
            let bytes = |n: Option<i64>| u64::try_from(n.unwrap_or(0)).unwrap_or(0);
            Ok(bytes(chunks) + bytes(segments))
        })
    }
}
