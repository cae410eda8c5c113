//! The stream domain's tables: stream keys, streams, raw source chunks (the backup of
//! what was received) and the HLS segments of every rendition.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `stream_keys`, `streams`, `stream_chunks` and `stream_segments`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum StreamKeys {
    Table,
    UserId,
    Key,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Streams {
    Table,
    Id,
    UserId,
    Title,
    State,
    StartedAt,
    EndedAt,
    Renditions,
}

#[derive(DeriveIden)]
enum StreamChunks {
    Table,
    StreamId,
    Seq,
    BlobId,
    StartMs,
    DurationMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StreamSegments {
    Table,
    StreamId,
    Rendition,
    Seq,
    DurationMs,
    BlobId,
    Discontinuity,
    Gap,
    ProgramDateMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(StreamKeys::Table)
                .col(big_integer(StreamKeys::UserId).primary_key())
                .col(string_uniq(StreamKeys::Key))
                .col(big_integer(StreamKeys::CreatedAt))
                .foreign_key(&mut crate::cascade(StreamKeys::Table, StreamKeys::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Streams::Table)
                .col(string(Streams::Id).primary_key())
                .col(big_integer(Streams::UserId))
                .col(string(Streams::Title))
                .col(string(Streams::State))
                .col(big_integer(Streams::StartedAt))
                .col(big_integer_null(Streams::EndedAt))
                .col(text(Streams::Renditions))
                .foreign_key(&mut crate::cascade(Streams::Table, Streams::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_streams_user").table(Streams::Table).col(Streams::UserId).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(StreamChunks::Table)
                .col(string(StreamChunks::StreamId))
                .col(big_integer(StreamChunks::Seq))
                .col(string(StreamChunks::BlobId))
                .col(big_integer(StreamChunks::StartMs))
                .col(big_integer(StreamChunks::DurationMs))
                .col(big_integer(StreamChunks::CreatedAt))
                .primary_key(Index::create().col(StreamChunks::StreamId).col(StreamChunks::Seq))
                .foreign_key(&mut crate::cascade(
                    StreamChunks::Table,
                    StreamChunks::StreamId,
                    Streams::Table,
                    Streams::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StreamSegments::Table)
                .col(string(StreamSegments::StreamId))
                .col(string(StreamSegments::Rendition))
                .col(big_integer(StreamSegments::Seq))
                .col(big_integer(StreamSegments::DurationMs))
                .col(string_null(StreamSegments::BlobId))
                .col(boolean(StreamSegments::Discontinuity))
                .col(boolean(StreamSegments::Gap))
                .col(big_integer(StreamSegments::ProgramDateMs))
                .primary_key(
                    Index::create()
                        .col(StreamSegments::StreamId)
                        .col(StreamSegments::Rendition)
                        .col(StreamSegments::Seq),
                )
                .foreign_key(&mut crate::cascade(
                    StreamSegments::Table,
                    StreamSegments::StreamId,
                    Streams::Table,
                    Streams::Id,
                ))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(StreamSegments::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(StreamChunks::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Streams::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(StreamKeys::Table).to_owned()).await
    }
}
