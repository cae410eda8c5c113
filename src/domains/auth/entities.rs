//! sea-orm entities for the auth domain's tables (see the accounts migration). Only this
//! domain reads or writes them.

/// Accounts.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// One account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// Account id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Login name (lowercase).
        pub username: String,
        /// `username@domain`.
        pub address: String,
        /// Argon2id PHC string.
        pub password_hash: String,
        /// A disabled account cannot log in and has no sessions.
        pub disabled: bool,
        /// Base32 TOTP secret (set at setup, active once `totp_enabled`).
        pub totp_secret: Option<String>,
        /// Whether TOTP is a second factor.
        pub totp_enabled: bool,
        /// The last accepted TOTP time step: a code is accepted once only.
        pub totp_last_step: Option<i64>,
        /// Phone number in E.164 form.
        pub phone: Option<String>,
        /// Whether the phone was verified (SMS is then a second factor).
        pub phone_verified: bool,
        /// Unix seconds.
        pub created_at: i64,
        /// Whether this is the administrator (the first account of the server).
        pub is_admin: bool,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Invitations to register while registration is closed, and the first-account row.
pub mod invitation {
    use sea_orm::entity::prelude::*;

    /// One single-use invitation, hashed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invitations")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Hex SHA-256 of the token, or `first-account` for the first account's row.
        pub token_hash: String,
        /// The administrator who made it; none when made on the command line.
        pub created_by: Option<i64>,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds from which it is refused.
        pub expires_at: i64,
        /// When it was used; a used invitation is refused.
        pub used_at: Option<i64>,
        /// The account it made.
        pub used_by: Option<i64>,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Login sessions.
pub mod session {
    use sea_orm::entity::prelude::*;

    /// One session; the token itself is never stored, only its SHA-256.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// Session id (shown to the user).
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// Hex SHA-256 of the token.
        pub token_hash: String,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds of the last use (updated at most once a minute).
        pub last_seen: i64,
        /// Address the session was created from.
        pub ip: String,
        /// Browser or client name.
        pub user_agent: String,
        /// Unix seconds until which this session may make sensitive changes (set when
        /// its user confirms the password); none before the first confirmation.
        pub reauth_until: Option<i64>,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One-time recovery codes.
pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    /// One code, hashed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// Hex SHA-256 of the normalised code.
        pub code_hash: String,
        /// When it was used; a used code is refused.
        pub used_at: Option<i64>,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// App passwords for IMAP and SMTP clients.
pub mod app_password {
    use sea_orm::entity::prelude::*;

    /// One app password, hashed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "app_passwords")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// The user's label, e.g. "Thunderbird".
        pub name: String,
        /// Hex SHA-256 of the secret.
        pub secret_hash: String,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds of the last successful use.
        pub last_used: Option<i64>,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// SMS codes in flight.
pub mod sms_code {
    use sea_orm::entity::prelude::*;

    /// One code sent by SMS, hashed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sms_codes")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// `login` or `verify`.
        pub purpose: String,
        /// The number it went to.
        pub phone: String,
        /// Hex SHA-256 of the code.
        pub code_hash: String,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds after which it is refused.
        pub expires_at: i64,
        /// Wrong tries so far.
        pub attempts: i32,
        /// Whether it was used (or burnt by too many tries).
        pub used: bool,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The per-user security log.
pub mod security_event {
    use sea_orm::entity::prelude::*;

    /// One security-relevant event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_log")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Whose log.
        pub user_id: i64,
        /// Unix seconds.
        pub at: i64,
        /// e.g. `login`, `login_failed`, `totp_enabled`.
        pub kind: String,
        /// Client address.
        pub ip: String,
        /// Short detail, never a secret.
        pub detail: String,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Networks banned for failing too many logins across accounts.
pub mod network_ban {
    use sea_orm::entity::prelude::*;

    /// One banned network.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "network_bans")]
    pub struct Model {
        /// An IPv4 address, or an IPv6 /64 as `2001:db8:1:2::/64` (`limits::rate_key`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub network: String,
        /// Unix seconds.
        pub banned_at: i64,
        /// Unix seconds from which logins are let through again.
        pub until: i64,
        /// Failed attempts that got it banned.
        pub failures: i32,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
