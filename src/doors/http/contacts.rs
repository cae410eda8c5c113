//! HTTP routes of the contacts domain under `/api/v1/contacts`: the caller's contacts
//! (list and search, create, read, change, delete), autocomplete for the compose box,
//! groups and their members, and vCard import and export. It parses queries and bodies,
//! calls [`ContactsService`] and maps [`ContactsError`]s onto [`AppError`]s; it holds no
//! SQL and no business rule.
//!
//! Invariants: every route takes a [`CurrentUser`] and passes only that user's id, so
//! another user's contact or group is "not found", never "forbidden"; a refused request
//! stores nothing; the export is always a download, never rendered inline.
//!
//! [`ContactsService`]: crate::domains::contacts::ContactsService

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::profile::{body_rejection, content_type};
use super::{ApiJson, AppError, CurrentUser, HttpState};
use crate::domains::contacts::{
    AddressSuggestion, Contact, ContactPatch, ContactsError, Email, Group, GroupRef, GroupSuggestion, ImportReport,
    ListQuery, MAX_PAGE, MAX_SUGGESTIONS, NewContact, Suggestions, fields, vcard,
};

/// Largest list offset.
const MAX_OFFSET: u64 = 1_000_000_000;
/// Longest search or autocomplete text, in characters.
const MAX_QUERY_CHARS: usize = 254;
/// Media types accepted for an import: vCard 4.0's, an older alias, and vCard 3.0's.
const VCARD_TYPES: &[&str] = &[vcard::MEDIA_TYPE, "text/x-vcard", "text/directory"];

/// The contact routes, relative to `/api/v1`. Imports may be as large as
/// `http.upload_limit_bytes`.
pub fn routes(state: &HttpState) -> Router<HttpState> {
    let upload_limit = DefaultBodyLimit::max(state.settings.upload_limit_bytes);
    Router::new()
        .route("/contacts", get(list_contacts).post(create_contact))
        .route("/contacts/autocomplete", get(autocomplete))
        .route("/contacts/import", axum::routing::post(import.layer(upload_limit)))
        .route("/contacts/export", get(export))
        .route("/contacts/groups", get(list_groups).post(create_group))
        .route("/contacts/groups/{id}", get(get_group).patch(rename_group).delete(delete_group))
        .route("/contacts/groups/{id}/members", put(set_members))
        .route("/contacts/{id}", get(get_contact).patch(patch_contact).delete(delete_contact))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        list_contacts,
        create_contact,
        get_contact,
        patch_contact,
        delete_contact,
        autocomplete,
        list_groups,
        create_group,
        get_group,
        rename_group,
        delete_group,
        set_members,
        import,
        export
    ),
    components(schemas(
        ContactView,
        EmailView,
        GroupRefView,
        ContactListView,
        NewContactBody,
        PatchContactBody,
        GroupView,
        GroupListView,
        NewGroupBody,
        RenameGroupBody,
        MembersBody,
        SuggestionsView,
        AddressSuggestionView,
        GroupSuggestionView,
        ImportView,
        ErrorBody,
        ErrorDetail
    ))
)]
struct ContactsApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ContactsApi::openapi()
}

impl From<ContactsError> for AppError {
    fn from(e: ContactsError) -> Self {
        let msg = e.to_string();
        match e {
            ContactsError::Invalid(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", msg),
            ContactsError::ContactNotFound => AppError::not_found("contact"),
            ContactsError::ContactsNotFound(_) => AppError::new(StatusCode::NOT_FOUND, "not_found", msg),
            ContactsError::GroupNotFound => AppError::not_found("group"),
            ContactsError::AddressTaken { .. } => AppError::new(StatusCode::CONFLICT, "address_taken", msg),
            ContactsError::GroupNameTaken(_) => AppError::new(StatusCode::CONFLICT, "group_exists", msg),
            ContactsError::Conflict(_) => AppError::new(StatusCode::CONFLICT, "conflict", msg),
            ContactsError::UnknownGroup(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_group", msg),
            ContactsError::EmptyGroup(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_group", msg),
            ContactsError::Db(_) => AppError::internal(msg),
        }
    }
}

/// One address of a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailView {
    /// As given.
    pub address: String,
    /// Whether it is the primary address (exactly one is).
    pub primary: bool,
    /// Messages the caller sent to it.
    pub use_count: i64,
    /// Unix seconds of the last one; 0 = never.
    pub last_used_at: i64,
}

/// A group a contact is in.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupRefView {
    /// Group id.
    pub id: i64,
    /// Group name.
    pub name: String,
}

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    /// Contact id.
    pub id: i64,
    /// Name (may be empty).
    pub name: String,
    /// Addresses, the primary first.
    pub emails: Vec<EmailView>,
    /// Phone (may be empty).
    pub phone: String,
    /// Notes (may be empty).
    pub notes: String,
    /// Groups it is in.
    pub groups: Vec<GroupRefView>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id,
            name: c.name,
            emails: c.emails.into_iter().map(EmailView::from).collect(),
            phone: c.phone,
            notes: c.notes,
            groups: c.groups.into_iter().map(|GroupRef { id, name }| GroupRefView { id, name }).collect(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

impl From<Email> for EmailView {
    fn from(e: Email) -> Self {
        Self { address: e.address, primary: e.primary, use_count: e.use_count, last_used_at: e.last_used_at }
    }
}

/// One page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactListView {
    /// The page, sorted by name (nameless contacts by address).
    pub contacts: Vec<ContactView>,
    /// How many contacts match in all.
    pub total: u64,
    /// The page size used.
    pub limit: u64,
    /// The offset used.
    pub offset: u64,
    /// The offset of the next page, or null on the last.
    pub next_offset: Option<u64>,
}

/// Query of the contact list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only contacts with a name word or an address starting with this (ignoring case).
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u64>,
    /// Contacts to skip, at most 10⁹ (default 0).
    pub offset: Option<u64>,
}

/// A new contact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContactBody {
    /// Name, at most 200 characters (default empty).
    #[serde(default)]
    pub name: String,
    /// 1 to 20 addresses; the first is the primary.
    pub emails: Vec<String>,
    /// Phone, at most 64 characters.
    #[serde(default)]
    pub phone: String,
    /// Notes, at most 10,000 characters.
    #[serde(default)]
    pub notes: String,
}

/// A change to a contact; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchContactBody {
    /// New name.
    pub name: Option<String>,
    /// The new address list, first = primary; addresses kept keep their use counts.
    pub emails: Option<Vec<String>>,
    /// New phone.
    pub phone: Option<String>,
    /// New notes.
    pub notes: Option<String>,
}

/// A group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    /// Group id.
    pub id: i64,
    /// Name, typed as a recipient to write to every member.
    pub name: String,
    /// The members' contact ids.
    pub member_ids: Vec<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<Group> for GroupView {
    fn from(g: Group) -> Self {
        Self { id: g.id, name: g.name, member_ids: g.member_ids, created_at: g.created_at, updated_at: g.updated_at }
    }
}

/// The caller's groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupListView {
    /// By name.
    pub groups: Vec<GroupView>,
}

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupBody {
    /// Name: unique ignoring case, at most 100 characters, none of `@ , ; < > "`.
    pub name: String,
    /// Its first members (contact ids of the caller).
    #[serde(default)]
    pub member_ids: Vec<i64>,
}

/// A group's new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameGroupBody {
    /// The new name.
    pub name: String,
}

/// A group's complete member list: a JSON array of contact ids, or `{"contact_ids": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MembersBody {
    /// `[1, 2, 3]`.
    List(Vec<i64>),
    /// `{"contact_ids": [1, 2, 3]}`.
    Object {
        /// The contact ids.
        contact_ids: Vec<i64>,
    },
}

/// Query of autocomplete.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AutocompleteParams {
    /// What was typed so far: a name word or the start of an address.
    pub q: Option<String>,
    /// Most suggestions of each kind, 1 to 50 (default 10).
    pub limit: Option<u64>,
}

/// An address to offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressSuggestionView {
    /// The contact.
    pub contact_id: i64,
    /// The contact's name (may be empty).
    pub name: String,
    /// The address.
    pub address: String,
    /// What to put into To/Cc: `Name <address>` (quoted where needed) or the address.
    pub display: String,
    /// Messages the caller sent to it.
    pub use_count: i64,
    /// Unix seconds of the last one; 0 = never.
    pub last_used_at: i64,
}

/// A group to offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupSuggestionView {
    /// Group id.
    pub id: i64,
    /// Its name: typed as a recipient, it expands to the members.
    pub name: String,
    /// How many contacts it holds.
    pub members: u64,
}

/// Suggestions for the compose box.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionsView {
    /// Addresses, most used first, then most recent.
    pub addresses: Vec<AddressSuggestionView>,
    /// Groups, by name.
    pub groups: Vec<GroupSuggestionView>,
}

impl From<Suggestions> for SuggestionsView {
    fn from(s: Suggestions) -> Self {
        let addresses = s
            .addresses
            .into_iter()
            .map(|a: AddressSuggestion| AddressSuggestionView {
                display: fields::mailbox(&a.name, &a.address),
                contact_id: a.contact_id,
                name: a.name,
                address: a.address,
                use_count: a.use_count,
                last_used_at: a.last_used_at,
            })
            .collect();
        let groups = s
            .groups
            .into_iter()
            .map(|g: GroupSuggestion| GroupSuggestionView { id: g.group_id, name: g.name, members: g.members })
            .collect();
        Self { addresses, groups }
    }
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportView {
    /// Cards taken in (created + merged).
    pub imported: usize,
    /// Cards stored as new contacts.
    pub created: usize,
    /// Cards merged into a contact that already had one of their addresses.
    pub merged: usize,
    /// Broken cards, or cards without a valid address.
    pub skipped: usize,
}

impl From<ImportReport> for ImportView {
    fn from(r: ImportReport) -> Self {
        Self { imported: r.imported(), created: r.created, merged: r.merged, skipped: r.skipped }
    }
}

/// A path id; anything but a number names nothing, so it is "not found".
fn id_of(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().map_err(|_| AppError::not_found(what))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(v)| v).map_err(|e| AppError::bad_request(e.body_text()))
}

fn search_text(q: Option<String>) -> Result<Option<String>, AppError> {
    match q {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
            Err(AppError::bad_request(format!("q is longer than {MAX_QUERY_CHARS} characters")))
        }
        other => Ok(other),
    }
}

/// Lists the caller's contacts, optionally searched.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ListParams),
    responses((status = 200, body = ContactListView),
        (status = 400, description = "bad limit, offset or q", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list_contacts(
    State(state): State<HttpState>,
    user: CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ApiJson<ContactListView>, AppError> {
    let p = query(params)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let offset = p.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(AppError::bad_request(format!("offset must be at most {MAX_OFFSET}")));
    }
    let q = search_text(p.q)?;
    let list = state.contacts.list_contacts(user.user_id, &ListQuery { q, limit, offset }).await?;
    let end = offset.saturating_add(list.contacts.len() as u64);
    Ok(ApiJson(ContactListView {
        next_offset: (end < list.total).then_some(end),
        total: list.total,
        limit,
        offset,
        contacts: list.contacts.into_iter().map(ContactView::from).collect(),
    }))
}

/// Adds a contact.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = NewContactBody,
    responses((status = 201, body = ContactView),
        (status = 409, description = "an address already belongs to another contact", body = ErrorBody),
        (status = 422, description = "a field was refused", body = ErrorBody)))]
async fn create_contact(
    State(state): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewContactBody>,
) -> Result<(StatusCode, ApiJson<ContactView>), AppError> {
    let new = NewContact { name: body.name, emails: body.emails, phone: body.phone, notes: body.notes };
    let c = state.contacts.create_contact(user.user_id, new).await?;
    Ok((StatusCode::CREATED, ApiJson(c.into())))
}

/// One of the caller's contacts.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts",
    params(("id" = i64, Path, description = "contact id")),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody)))]
async fn get_contact(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<ApiJson<ContactView>, AppError> {
    let c = state.contacts.contact(user.user_id, id_of(&id, "contact")?).await?;
    Ok(ApiJson(c.into()))
}

/// Changes a contact.
#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts", request_body = PatchContactBody,
    params(("id" = i64, Path, description = "contact id")),
    responses((status = 200, body = ContactView), (status = 404, body = ErrorBody),
        (status = 409, description = "an address already belongs to another contact", body = ErrorBody),
        (status = 422, description = "a field was refused", body = ErrorBody)))]
async fn patch_contact(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchContactBody>,
) -> Result<ApiJson<ContactView>, AppError> {
    let id = id_of(&id, "contact")?;
    let patch = ContactPatch { name: body.name, emails: body.emails, phone: body.phone, notes: body.notes };
    let c = state.contacts.update_contact(user.user_id, id, patch).await?;
    Ok(ApiJson(c.into()))
}

/// Deletes a contact (it leaves its groups).
#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts",
    params(("id" = i64, Path, description = "contact id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
async fn delete_contact(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.contacts.delete_contact(user.user_id, id_of(&id, "contact")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suggestions for the compose box: addresses whose contact has a name word starting with
/// `q`, or which start with `q`, most used first; and groups with a word starting with it.
#[utoipa::path(get, path = "/api/v1/contacts/autocomplete", tag = "contacts", params(AutocompleteParams),
    responses((status = 200, body = SuggestionsView), (status = 400, body = ErrorBody)))]
async fn autocomplete(
    State(state): State<HttpState>,
    user: CurrentUser,
    params: Result<Query<AutocompleteParams>, QueryRejection>,
) -> Result<ApiJson<SuggestionsView>, AppError> {
    let p = query(params)?;
    let limit = p.limit.unwrap_or(10);
    if !(1..=MAX_SUGGESTIONS).contains(&limit) {
        return Err(AppError::bad_request(format!("limit must be 1 to {MAX_SUGGESTIONS}")));
    }
    let q = search_text(p.q)?.unwrap_or_default();
    let s = state.contacts.autocomplete(user.user_id, &q, limit).await?;
    Ok(ApiJson(s.into()))
}

/// The caller's groups with their members.
#[utoipa::path(get, path = "/api/v1/contacts/groups", tag = "contacts",
    responses((status = 200, body = GroupListView), (status = 401, body = ErrorBody)))]
async fn list_groups(State(state): State<HttpState>, user: CurrentUser) -> Result<ApiJson<GroupListView>, AppError> {
    let groups = state.contacts.groups(user.user_id).await?;
    Ok(ApiJson(GroupListView { groups: groups.into_iter().map(GroupView::from).collect() }))
}

/// Creates a group.
#[utoipa::path(post, path = "/api/v1/contacts/groups", tag = "contacts", request_body = NewGroupBody,
    responses((status = 201, body = GroupView),
        (status = 404, description = "a member id is not a contact of the caller", body = ErrorBody),
        (status = 409, description = "a group of that name exists", body = ErrorBody),
        (status = 422, description = "bad name", body = ErrorBody)))]
async fn create_group(
    State(state): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewGroupBody>,
) -> Result<(StatusCode, ApiJson<GroupView>), AppError> {
    let g = state.contacts.create_group(user.user_id, &body.name, &body.member_ids).await?;
    Ok((StatusCode::CREATED, ApiJson(g.into())))
}

/// One of the caller's groups.
#[utoipa::path(get, path = "/api/v1/contacts/groups/{id}", tag = "contacts",
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
async fn get_group(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<ApiJson<GroupView>, AppError> {
    let g = state.contacts.group(user.user_id, id_of(&id, "group")?).await?;
    Ok(ApiJson(g.into()))
}

/// Renames a group.
#[utoipa::path(patch, path = "/api/v1/contacts/groups/{id}", tag = "contacts", request_body = RenameGroupBody,
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody),
        (status = 409, description = "a group of that name exists", body = ErrorBody),
        (status = 422, description = "bad name", body = ErrorBody)))]
async fn rename_group(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameGroupBody>,
) -> Result<ApiJson<GroupView>, AppError> {
    let g = state.contacts.rename_group(user.user_id, id_of(&id, "group")?, &body.name).await?;
    Ok(ApiJson(g.into()))
}

/// Deletes a group (its contacts stay).
#[utoipa::path(delete, path = "/api/v1/contacts/groups/{id}", tag = "contacts",
    params(("id" = i64, Path, description = "group id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
async fn delete_group(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.contacts.delete_group(user.user_id, id_of(&id, "group")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a group's members.
#[utoipa::path(put, path = "/api/v1/contacts/groups/{id}/members", tag = "contacts", request_body = MembersBody,
    params(("id" = i64, Path, description = "group id")),
    responses((status = 200, body = GroupView),
        (status = 404, description = "no such group, or a contact id not the caller's", body = ErrorBody),
        (status = 422, description = "too many members", body = ErrorBody)))]
async fn set_members(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MembersBody>,
) -> Result<ApiJson<GroupView>, AppError> {
    let ids = match body {
        MembersBody::List(ids) | MembersBody::Object { contact_ids: ids } => ids,
    };
    let g = state.contacts.set_members(user.user_id, id_of(&id, "group")?, &ids).await?;
    Ok(ApiJson(g.into()))
}

/// Imports a vCard file (3.0 or 4.0, UTF-8): the body is the file. A card whose address
/// is already in the book is merged into that contact; CATEGORIES become groups; broken
/// cards are skipped and counted.
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts",
    request_body(content = String, content_type = "text/vcard"),
    responses((status = 200, body = ImportView),
        (status = 400, description = "not UTF-8", body = ErrorBody),
        (status = 422, description = "more than 20,000 cards", body = ErrorBody),
        (status = 413, description = "larger than http.upload_limit_bytes", body = ErrorBody),
        (status = 415, description = "not text/vcard", body = ErrorBody)))]
async fn import(
    State(state): State<HttpState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ApiJson<ImportView>, AppError> {
    let essence = content_type(&headers)
        .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !VCARD_TYPES.contains(&essence.as_str()) {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: text/vcard",
        ));
    }
    let body = body.map_err(body_rejection)?;
    let text = std::str::from_utf8(&body).map_err(|_| AppError::bad_request("the vCard file must be UTF-8"))?;
    let report = state.contacts.import_vcard(user.user_id, text).await?;
    Ok(ApiJson(report.into()))
}

/// The caller's whole contact book as one vCard 3.0 file.
#[utoipa::path(get, path = "/api/v1/contacts/export", tag = "contacts",
    responses((status = 200, description = "contacts.vcf", body = String, content_type = "text/vcard")))]
async fn export(State(state): State<HttpState>, user: CurrentUser) -> Result<Response, AppError> {
    let file = state.contacts.export_vcard(user.user_id).await?;
    let mut resp = file.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/vcard; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"contacts.vcf\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_lists_every_route() {
        let doc = openapi();
        for p in [
            "/api/v1/contacts",
            "/api/v1/contacts/{id}",
            "/api/v1/contacts/autocomplete",
            "/api/v1/contacts/groups",
            "/api/v1/contacts/groups/{id}",
            "/api/v1/contacts/groups/{id}/members",
            "/api/v1/contacts/import",
            "/api/v1/contacts/export",
        ] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }

    #[test]
    fn errors_map_to_clear_statuses() {
        let cases = [
            (ContactsError::Invalid("x".into()), StatusCode::UNPROCESSABLE_ENTITY),
            (ContactsError::ContactNotFound, StatusCode::NOT_FOUND),
            (ContactsError::ContactsNotFound(vec![3]), StatusCode::NOT_FOUND),
            (ContactsError::GroupNotFound, StatusCode::NOT_FOUND),
            (ContactsError::AddressTaken { address: "a@b".into(), contact_id: 1 }, StatusCode::CONFLICT),
            (ContactsError::GroupNameTaken("g".into()), StatusCode::CONFLICT),
            (ContactsError::UnknownGroup("g".into()), StatusCode::UNPROCESSABLE_ENTITY),
        ];
        for (e, status) in cases {
            assert_eq!(AppError::from(e).status, status);
        }
        assert_eq!(id_of("12", "contact").unwrap(), 12);
        assert_eq!(id_of("x", "contact").unwrap_err().status, StatusCode::NOT_FOUND);
    }
}
