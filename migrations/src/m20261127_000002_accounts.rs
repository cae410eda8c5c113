//! The auth domain's tables: users, sessions, recovery codes, app passwords, SMS codes
//! and the per-user security log.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the account tables.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    Address,
    PasswordHash,
    Disabled,
    TotpSecret,
    TotpEnabled,
    TotpLastStep,
    Phone,
    PhoneVerified,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    LastSeen,
    Ip,
    UserAgent,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    UsedAt,
}

#[derive(DeriveIden)]
enum AppPasswords {
    Table,
    Id,
    UserId,
    Name,
    SecretHash,
    CreatedAt,
    LastUsed,
}

#[derive(DeriveIden)]
enum SmsCodes {
    Table,
    Id,
    UserId,
    Purpose,
    Phone,
    CodeHash,
    CreatedAt,
    ExpiresAt,
    Attempts,
    Used,
}

#[derive(DeriveIden)]
enum SecurityLog {
    Table,
    Id,
    UserId,
    At,
    Kind,
    Ip,
    Detail,
}

fn user_fk(table: impl IntoIden + 'static, col: impl IntoIden + 'static) -> ForeignKeyCreateStatement {
    crate::cascade(table, col, Users::Table, Users::Id)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(big_pk_auto(Users::Id))
                .col(string_uniq(Users::Username))
                .col(string_uniq(Users::Address))
                .col(string(Users::PasswordHash))
                .col(boolean(Users::Disabled).default(false))
                .col(string_null(Users::TotpSecret))
                .col(boolean(Users::TotpEnabled).default(false))
                .col(big_integer_null(Users::TotpLastStep))
                .col(string_null(Users::Phone))
                .col(boolean(Users::PhoneVerified).default(false))
                .col(big_integer(Users::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(big_pk_auto(Sessions::Id))
                .col(big_integer(Sessions::UserId))
                .col(string_uniq(Sessions::TokenHash))
                .col(big_integer(Sessions::CreatedAt))
                .col(big_integer(Sessions::LastSeen))
                .col(string(Sessions::Ip))
                .col(string(Sessions::UserAgent))
                .foreign_key(&mut user_fk(Sessions::Table, Sessions::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RecoveryCodes::Table)
                .col(big_pk_auto(RecoveryCodes::Id))
                .col(big_integer(RecoveryCodes::UserId))
                .col(string(RecoveryCodes::CodeHash))
                .col(big_integer_null(RecoveryCodes::UsedAt))
                .foreign_key(&mut user_fk(RecoveryCodes::Table, RecoveryCodes::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AppPasswords::Table)
                .col(big_pk_auto(AppPasswords::Id))
                .col(big_integer(AppPasswords::UserId))
                .col(string(AppPasswords::Name))
                .col(string_uniq(AppPasswords::SecretHash))
                .col(big_integer(AppPasswords::CreatedAt))
                .col(big_integer_null(AppPasswords::LastUsed))
                .foreign_key(&mut user_fk(AppPasswords::Table, AppPasswords::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SmsCodes::Table)
                .col(big_pk_auto(SmsCodes::Id))
                .col(big_integer(SmsCodes::UserId))
                .col(string(SmsCodes::Purpose))
                .col(string(SmsCodes::Phone))
                .col(string(SmsCodes::CodeHash))
                .col(big_integer(SmsCodes::CreatedAt))
                .col(big_integer(SmsCodes::ExpiresAt))
                .col(integer(SmsCodes::Attempts).default(0))
                .col(boolean(SmsCodes::Used).default(false))
                .foreign_key(&mut user_fk(SmsCodes::Table, SmsCodes::UserId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SecurityLog::Table)
                .col(big_pk_auto(SecurityLog::Id))
                .col(big_integer(SecurityLog::UserId))
                .col(big_integer(SecurityLog::At))
                .col(string(SecurityLog::Kind))
                .col(string(SecurityLog::Ip))
                .col(string(SecurityLog::Detail))
                .foreign_key(&mut user_fk(SecurityLog::Table, SecurityLog::UserId))
                .to_owned(),
        )
        .await?;
        for (table, col, name) in [
            (Sessions::Table.into_iden(), Sessions::UserId.into_iden(), "idx_sessions_user"),
            (RecoveryCodes::Table.into_iden(), RecoveryCodes::UserId.into_iden(), "idx_recovery_user"),
            (AppPasswords::Table.into_iden(), AppPasswords::UserId.into_iden(), "idx_app_passwords_user"),
            (SmsCodes::Table.into_iden(), SmsCodes::UserId.into_iden(), "idx_sms_codes_user"),
            (SecurityLog::Table.into_iden(), SecurityLog::UserId.into_iden(), "idx_security_log_user"),
        ] {
            m.create_index(Index::create().name(name).table(table).col(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            SecurityLog::Table.into_iden(),
            SmsCodes::Table.into_iden(),
            AppPasswords::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
