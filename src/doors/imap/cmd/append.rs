//! APPEND (RFC 9051 §6.3.12): stores a message in one of the user's own mailboxes with the
//! flags and internal date the client gives, through the mail store, so it is threaded,
//! counted and announced like any other message, within the user's storage quota. A
//! mailbox that does not exist is `NO [TRYCREATE]`; a full account `NO [OVERQUOTA]`.

use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use super::super::reply::{Out, bad, no_code, ok};
use super::super::session::{Session, State};
use super::mailboxes::name_of;
use super::{bits_of, failed};
use crate::domains::mail::store::Target;
use crate::domains::mail::{Flags, MailError, NewMessage, parse};
use crate::platform::quota::QuotaError;

impl Session {
    /// APPEND.
    pub(in super::super) async fn append(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'static>,
        flags: &[Flag<'static>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) -> Vec<Out> {
        let Some(user) = self.account() else { return vec![bad(tag, "Log in first")] };
        let Some(name) = name_of(mailbox) else {
            return vec![bad(tag, "The mailbox name is not valid modified UTF-7")];
        };
        let target = match self.mail.uid_mailbox(user, &name).await {
            Ok(Some(m)) => m,
            Ok(None) => return vec![no_code(tag, "TRYCREATE", "No such mailbox; create it first")],
            Err(e) => return vec![failed(tag, e)],
        };
        let raw: Bytes = match message {
            LiteralOrLiteral8::Literal(l) => Bytes::from(l.into_inner().into_owned()),
            LiteralOrLiteral8::Literal8(l) => Bytes::from(l.data.into_owned()),
        };
        if raw.is_empty() {
            return vec![bad(tag, "An empty message cannot be appended")];
        }
        match self.mail.limits().quota.check(user, raw.len() as u64).await {
            Ok(()) => {}
            Err(QuotaError::Exceeded { .. }) => return vec![no_code(tag, "OVERQUOTA", "Your storage is full")],
            Err(QuotaError::Db(e)) => return vec![failed(tag, MailError::Db(e))],
        }
        let Some(meta) = parse::meta_of_bytes(&raw).await else {
            return vec![failed(tag, MailError::Interrupted)];
        };
        let mut new = NewMessage::new(user, Target::Mailbox(target.id));
        new.flags = Flags(bits_of(flags));
        if let Some(date) = date {
            new.internal_date = date.as_ref().timestamp();
        }
        if let Err(e) = self.mail.store(raw, Arc::new(meta), vec![new]).await {
            return vec![failed(tag, e)];
        }
        // The selected mailbox learns of the new message at once (RFC 9051 §6.3.12).
        let mut out = match &self.state {
            State::Selected(_, selected) if selected.mailbox.id == target.id => self.refresh().await,
            _ => Vec::new(),
        };
        out.push(ok(tag, "APPEND done"));
        out
    }
}
