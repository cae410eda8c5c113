//! The contacts domain's tables as sea-orm entities (see the contacts migration): contacts,
//! their addresses, groups, group members and the sent messages already counted. Only the
//! contacts domain reads or writes them.

/// The `contacts` table.
pub mod contact {
    use sea_orm::entity::prelude::*;

    /// One contact of a user's book.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        /// Contact id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The owner (`users.id`).
        pub user_id: i64,
        /// The name as given (may be empty: the address is shown instead).
        pub name: String,
        /// What lists sort by: the lower-cased name, or the primary address without a name.
        pub sort_key: String,
        /// The name's words, lower-cased, each after a space (`" ada lovelace"`), so a
        /// word prefix is one `LIKE '% pre%'`.
        pub name_key: String,
        /// Phone number as given (may be empty).
        pub phone: String,
        /// Free text (may be empty).
        pub notes: String,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds.
        pub updated_at: i64,
    }

    /// A contact has addresses.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its addresses.
        #[sea_orm(has_many = "super::address::Entity")]
        Address,
    }

    impl Related<super::address::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Address.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `contact_addresses` table.
pub mod address {
    use sea_orm::entity::prelude::*;

    /// One address of a contact, with how often and when the user last wrote to it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_addresses")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The owner (`users.id`), repeated so an address is unique per user.
        pub user_id: i64,
        /// The contact it belongs to.
        pub contact_id: i64,
        /// As given (shown).
        pub address: String,
        /// Lower-cased (matched; unique per user).
        pub address_lc: String,
        /// The contact's primary address (exactly one per contact).
        pub is_primary: bool,
        /// Order within the contact (the primary is 0).
        pub position: i32,
        /// Messages the user sent to it.
        pub use_count: i64,
        /// Unix seconds of the last message sent to it; 0 = never.
        pub last_used_at: i64,
    }

    /// An address belongs to a contact.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its contact.
        #[sea_orm(
            belongs_to = "super::contact::Entity",
            from = "Column::ContactId",
            to = "super::contact::Column::Id",
            on_delete = "Cascade"
        )]
        Contact,
    }

    impl Related<super::contact::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Contact.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `contact_groups` table.
pub mod group {
    use sea_orm::entity::prelude::*;

    /// A named group of contacts.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_groups")]
    pub struct Model {
        /// Group id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The owner (`users.id`).
        pub user_id: i64,
        /// As given (shown).
        pub name: String,
        /// Lower-cased (unique per user).
        pub name_lc: String,
        /// Unix seconds.
        pub created_at: i64,
        /// Unix seconds.
        pub updated_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `contact_group_members` table.
pub mod member {
    use sea_orm::entity::prelude::*;

    /// A contact in a group.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_group_members")]
    pub struct Model {
        /// The group.
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: i64,
        /// The contact.
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: i64,
        /// Unix seconds.
        pub added_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `contacts_noted_messages` table.
pub mod noted {
    use sea_orm::entity::prelude::*;

    /// A sent message whose recipients were already counted.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts_noted_messages")]
    pub struct Model {
        /// The sender (`users.id`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// The mail store's id of the copy in Sent.
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: i64,
        /// Unix seconds.
        pub noted_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
