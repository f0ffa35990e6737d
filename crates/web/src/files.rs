//! The files API (`/files`, spec core-api B.8) and `GET /settings/disk-usage` (B.9):
//! thin handlers over [`hearth_vfs::Vfs`], JSON:API rendering of `io.cozy.files`
//! (sizes as strings, `_id`/`_rev` out of attributes, `referenced_by` as a
//! relationship, directories without `trashed`), streamed uploads and downloads.

use std::collections::HashMap;
use std::io;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use futures_util::StreamExt;
use hearth_core::JsonMap;
use hearth_instances::Instance;
use hearth_store::mango::FindQuery;
use hearth_vfs::{
    BlobReader, FILES, FileDoc, NewDir, NewFile, Overwrite, Patch, ROOT_DIR_ID, TRASH_DIR_ID,
    VfsError, thumbs,
};
use serde_json::{Value, json};

use crate::{
    AppState, Inst, Perm,
    error::{ApiError, ErrorSource, jsonapi},
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/files/", post(create_in_root))
        .route("/files/_find", post(find))
        .route("/files/metadata", get(get_metadata))
        .route("/files/download", get(download_by_path))
        .route("/files/download/{id}", get(download))
        .route("/files/trash", get(list_trash).delete(empty_trash))
        .route("/files/trash/{id}", post(restore).delete(destroy))
        .route(
            "/files/{id}",
            get(get_file)
                .post(create_in_dir)
                .put(overwrite)
                .patch(patch_file)
                .delete(trash_file),
        )
        .route("/files/{id}/thumbnails/{secret}/{format}", get(thumbnail))
        .route(
            "/files/{id}/relationships/referenced_by",
            get(list_references)
                .post(add_references)
                .delete(remove_references),
        )
}

/// `GET /settings/disk-usage`, served with the other settings even when the instance
/// is blocked (spec instances 4.5).
pub(crate) fn settings_routes() -> Router<AppState> {
    Router::new().route("/settings/disk-usage", get(disk_usage))
}

/// What a files handler can fail with: a JSON:API error, or the framework's plain
/// `{"error": "Forbidden"}` of a permission refusal (spec core-api B.2).
#[derive(Debug)]
enum FilesError {
    Api(ApiError),
    Forbidden,
}

type Res = Result<Response, FilesError>;

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Forbidden => {
                (StatusCode::FORBIDDEN, Json(json!({"error": "Forbidden"}))).into_response()
            }
        }
    }
}

impl From<ApiError> for FilesError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<hearth_store::StoreError> for FilesError {
    fn from(e: hearth_store::StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<VfsError> for FilesError {
    fn from(e: VfsError) -> Self {
        Self::Api(vfs_error(e))
    }
}

/// The one table from VFS outcomes to HTTP (spec core-api B.8, "VFS error → HTTP").
pub(crate) fn vfs_error(e: VfsError) -> ApiError {
    let parameter = |p: &str| ErrorSource::Parameter(p.to_owned());
    match e {
        VfsError::NotFound(detail) => ApiError::not_found(detail),
        VfsError::Exists => ApiError::conflict("file already exists"),
        VfsError::Invalid { field, detail } => ApiError::invalid_parameter(field, detail),
        VfsError::RevMismatch => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "Revision does not match")
                .with_source(parameter("If-Match"))
        }
        e @ VfsError::Md5Mismatch => ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            .with_source(parameter("Content-MD5")),
        e @ VfsError::SizeMismatch { .. } => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
                .with_source(parameter("Content-Length"))
        }
        e @ VfsError::QuotaExceeded => ApiError::payload_too_large(e.to_string()),
        VfsError::BadRequest(detail) => ApiError::bad_request(detail),
        VfsError::Body(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            ApiError::payload_too_large(
                "The file is larger than this server accepts in one request (limits.body_bytes)",
            )
        }
        VfsError::Body(e) => {
            tracing::info!(error = %e, "upload interrupted");
            ApiError::bad_request("The upload was interrupted before its end")
        }
        e @ VfsError::BadImage(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        VfsError::Store(e) => e.into(),
        e @ VfsError::Io(_) => ApiError::internal(&e),
    }
}

// ---------------------------------------------------------------------------
// Rendering

fn reference(id: &str) -> Value {
    json!({"type": FILES, "id": id})
}

/// The thumbnail formats a file's `links` name (Cozy's `tiny` is served by `small`).
const THUMB_LINKS: [&str; 4] = ["tiny", "small", "medium", "large"];

/// The JSON:API resource of a file or directory (spec core-api B.8.2). Images that
/// can have thumbnails get `links.tiny|small|medium|large`, signed links that need no
/// token (so that an `<img>` can load them).
fn resource(inst: &Instance, doc: &FileDoc) -> Value {
    let mut attrs = doc.body.clone();
    for k in ["_id", "_rev", "internal_vfs_id", "referenced_by"] {
        attrs.shift_remove(k);
    }
    if doc.is_dir() {
        attrs.shift_remove("trashed");
    } else {
        attrs.insert("size".into(), Value::String(doc.size().to_string()));
        if !doc.path.is_empty() {
            attrs.insert("path".into(), Value::String(doc.path.clone()));
        }
    }
    let mut rels = JsonMap::new();
    if doc.id != ROOT_DIR_ID && !doc.dir_id().is_empty() {
        rels.insert(
            "parent".into(),
            json!({"links": {"related": format!("/files/{}", doc.dir_id())}, "data": reference(doc.dir_id())}),
        );
    }
    rels.insert(
        "referenced_by".into(),
        json!({
            "links": {"self": format!("/files/{}/relationships/references", doc.id)},
            "data": doc.referenced_by(),
        }),
    );
    let mut links = JsonMap::new();
    links.insert("self".into(), Value::String(format!("/files/{}", doc.id)));
    if doc.class() == "image"
        && thumbs::can_thumbnail_file(doc)
        && let Some(secret) = thumbs::thumbnail_secret(inst, doc)
    {
        for format in THUMB_LINKS {
            links.insert(
                format.into(),
                Value::String(format!("/files/{}/thumbnails/{secret}/{format}", doc.id)),
            );
        }
    }
    json!({
        "type": FILES,
        "id": doc.id,
        "attributes": attrs,
        "meta": {"rev": doc.rev},
        "links": links,
        "relationships": rels,
    })
}

/// An old version as a JSON:API resource.
fn version_resource(v: &JsonMap) -> Value {
    let mut attrs = v.clone();
    let id = attrs
        .shift_remove("_id")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let rev = attrs.shift_remove("_rev").unwrap_or(Value::Null);
    if let Some(s) = attrs.get("size").and_then(Value::as_u64) {
        attrs.insert("size".into(), Value::String(s.to_string()));
    }
    json!({
        "type": hearth_vfs::VERSIONS,
        "id": id,
        "attributes": attrs,
        "meta": {"rev": rev},
        "links": {"self": format!("/files/download/{id}")},
    })
}

/// A file with its old versions (`relationships.old_versions` and `included`).
async fn file_with_versions(state: &AppState, inst: &Inst, doc: &FileDoc) -> Res {
    let versions = state.vfs.versions_of(&inst.0, &doc.id).await?;
    let mut data = resource(&inst.0, doc);
    let refs: Vec<Value> = versions
        .iter()
        .filter_map(|v| v.get("_id").cloned())
        .map(|id| json!({"type": hearth_vfs::VERSIONS, "id": id}))
        .collect();
    data["relationships"]["old_versions"] = json!({"data": refs});
    let included: Vec<Value> = versions.iter().map(version_resource).collect();
    let mut body = json!({"data": data});
    if !included.is_empty() {
        body["included"] = Value::Array(included);
    }
    Ok(jsonapi(StatusCode::OK, &body))
}

/// Paging parameters: `page[limit]` (default 30), `page[cursor]`, `page[skip]`.
struct Paging {
    limit: usize,
    cursor: Option<String>,
    skip: usize,
}

fn paging(q: &HashMap<String, String>, default: usize) -> Result<Paging, ApiError> {
    let num = |k: &str| -> Result<Option<usize>, ApiError> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| ApiError::invalid_parameter(k, format!("{k} must be a number")))
            })
            .transpose()
    };
    Ok(Paging {
        limit: num("page[limit]")?
            .filter(|l| *l > 0)
            .unwrap_or(default)
            .min(hearth_vfs::MAX_PAGE),
        cursor: q.get("page[cursor]").filter(|c| !c.is_empty()).cloned(),
        skip: num("page[skip]")?.unwrap_or(0),
    })
}

/// A directory with one page of its children (`relationships.contents`, `included`,
/// `links.next`), or a file with its versions.
async fn render(
    state: &AppState,
    inst: &Inst,
    doc: &FileDoc,
    q: &HashMap<String, String>,
    status: StatusCode,
) -> Res {
    if !doc.is_dir() {
        let mut res = file_with_versions(state, inst, doc).await?;
        *res.status_mut() = status;
        return Ok(res);
    }
    let p = paging(q, hearth_vfs::DEFAULT_PAGE)?;
    let page = state
        .vfs
        .children(&inst.0, doc, p.limit, p.cursor.as_deref(), p.skip)
        .await?;
    let mut data = resource(&inst.0, doc);
    let mut contents_links = json!({"self": format!("/files/{}/relationships/contents", doc.id)});
    let mut links = json!({"self": format!("/files/{}", doc.id)});
    if let Some(next) = &page.next {
        let url = format!(
            "/files/{}?page[limit]={}&page[cursor]={}",
            doc.id,
            p.limit,
            pct_encode(next)
        );
        contents_links["next"] = Value::String(url.clone());
        links["next"] = Value::String(url);
    }
    data["relationships"]["contents"] = json!({
        "meta": {"count": page.count},
        "links": contents_links,
        "data": page.docs.iter().map(|d| reference(&d.id)).collect::<Vec<_>>(),
    });
    let included: Vec<Value> = page.docs.iter().map(|d| resource(&inst.0, d)).collect();
    Ok(jsonapi(
        status,
        json!({"data": data, "included": included, "links": links}),
    ))
}

// ---------------------------------------------------------------------------
// Request helpers

/// A header's value; empty values (client noise such as `If-Match: `) are absent.
fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn if_match(h: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    header_str(h, header::IF_MATCH)
        .map(|v| v.trim_matches('"').to_owned())
        .or_else(|| param(q, "rev").map(str::to_owned))
        .filter(|v| !v.is_empty())
}

fn bool_param(q: &HashMap<String, String>, name: &str) -> bool {
    param(q, name) == Some("true")
}

/// `Content-MD5`: base64 of the 16 raw bytes (malformed → 422).
fn content_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>, ApiError> {
    let Some(v) = header_str(h, header::HeaderName::from_static("content-md5")) else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_parameter("Content-MD5", "Content-MD5 must be the base64 of an MD5")
        })
}

/// The announced size: `Content-Length`, else the `Size` parameter.
fn announced_size(h: &HeaderMap, q: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    let parse = |name: &str, v: &str| {
        v.parse::<u64>().map_err(|_| {
            ApiError::invalid_parameter(name, format!("{name} must be a number of bytes"))
        })
    };
    if let Some(v) = header_str(h, header::CONTENT_LENGTH) {
        return parse("Content-Length", v).map(Some);
    }
    param(q, "Size").map(|v| parse("Size", v)).transpose()
}

/// The `Date` header (RFC 1123) as RFC 3339, for dates not given otherwise.
fn date_header(h: &HeaderMap) -> Option<String> {
    let v = header_str(h, header::DATE)?;
    let t = httpdate::parse_http_date(v).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(hearth_core::rfc3339(secs))
}

/// The request body as a stream of chunks; a body cut by the size limit becomes
/// `ErrorKind::FileTooLarge` (answered 413).
fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
    body.into_data_stream().map(|r| {
        r.map_err(|e| {
            let too_large = {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                let mut found = false;
                while let Some(s) = source {
                    if s.is::<http_body_util::LengthLimitError>() {
                        found = true;
                        break;
                    }
                    source = s.source();
                }
                found
            };
            if too_large {
                io::Error::new(io::ErrorKind::FileTooLarge, e)
            } else {
                io::Error::other(e)
            }
        })
    })
}

/// A JSON request body (JSON:API bodies arrive as `application/json` too).
fn parse_body(raw: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("The body is not valid JSON: {e}")))
}

// ---------------------------------------------------------------------------
// Permissions

/// `verb` on a document: the whole doctype, the document itself (id or selector
/// rule), or one of its ancestors (a rule on a directory covers what is inside).
async fn allow(
    state: &AppState,
    inst: &Inst,
    perm: &Perm,
    verb: &str,
    doc: &FileDoc,
) -> Result<(), FilesError> {
    if perm.set.allows_whole_type(verb, FILES) {
        return Ok(());
    }
    let value = Value::Object(doc.body.clone());
    if perm.set.allows_doc(verb, FILES, &doc.id, Some(&value)) {
        return Ok(());
    }
    for id in state.vfs.ancestors(&inst.0, doc).await? {
        if perm.set.allows_doc(verb, FILES, &id, None) {
            return Ok(());
        }
    }
    Err(FilesError::Forbidden)
}

fn allow_whole(perm: &Perm, verb: &str) -> Result<(), FilesError> {
    if perm.set.allows_whole_type(verb, FILES) {
        Ok(())
    } else {
        Err(FilesError::Forbidden)
    }
}

// ---------------------------------------------------------------------------
// Handlers: creation and upload

/// `POST /files/` — spec core-api B.8.4: create a directory or upload a file at the
/// root (`Type=directory|file`, `Name`, …).
async fn create_in_root(
    state: State<AppState>,
    inst: Inst,
    perm: Perm,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    create(state, inst, perm, String::new(), q, headers, body).await
}

/// `POST /files/:dir-id` — spec core-api B.8.4: create a directory (201) or upload
/// a file (201) in a directory; 404 parent missing or trashed, 409 name taken, 412
/// MD5/length mismatch, 413 quota, 422 bad `Type`, name or date.
async fn create_in_dir(
    state: State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(dir_id): Path<String>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    create(state, inst, perm, dir_id, q, headers, body).await
}

async fn create(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    dir_id: String,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    let dir_id = if dir_id.is_empty() {
        ROOT_DIR_ID.to_owned()
    } else {
        dir_id
    };
    let kind = param(&q, "Type").unwrap_or("");
    if kind != "directory" && kind != "file" {
        return Err(
            ApiError::invalid_attribute("type", "Type must be \"directory\" or \"file\"").into(),
        );
    }
    if param(&q, "MetadataID").is_some() {
        return Err(ApiError::invalid_parameter(
            "MetadataID",
            "This MetadataID is unknown or expired",
        )
        .into());
    }
    let name = param(&q, "Name").unwrap_or("").to_owned();
    let parent = state.vfs.get(&inst.0, &dir_id).await.map_err(|e| match e {
        VfsError::NotFound(_) => VfsError::NotFound("the parent directory does not exist"),
        e => e,
    })?;
    allow(&state, &inst, &perm, "POST", &parent).await?;
    let tags = param(&q, "Tags")
        .map(hearth_vfs::parse_tags)
        .unwrap_or_default();
    let date = date_header(&headers);
    let created_at = param(&q, "CreatedAt")
        .map(str::to_owned)
        .or_else(|| date.clone());
    let updated_at = param(&q, "UpdatedAt").map(str::to_owned).or(date);
    let doc = if kind == "directory" {
        let d = NewDir {
            name,
            tags,
            created_at,
            updated_at,
        };
        state.vfs.create_dir(&inst.0, &parent.id, d).await?
    } else {
        let metadata = match param(&q, "Metadata") {
            None => None,
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(m)) => Some(m),
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "Metadata",
                        "Metadata must be a JSON object",
                    )
                    .into());
                }
            },
        };
        let f = NewFile {
            name,
            content_type: header_str(&headers, header::CONTENT_TYPE).map(str::to_owned),
            size: announced_size(&headers, &q)?,
            md5: content_md5(&headers)?,
            executable: bool_param(&q, "Executable"),
            encrypted: bool_param(&q, "Encrypted"),
            tags,
            created_at,
            updated_at,
            metadata,
        };
        state
            .vfs
            .upload(&inst.0, &parent.id, f, body_stream(body))
            .await?
    };
    Ok(jsonapi(
        StatusCode::CREATED,
        json!({"data": resource(&inst.0, &doc)}),
    ))
}

/// `PUT /files/:id` — spec core-api B.8.4: overwrite a file's content (the old one
/// becomes a version); `If-Match` (412), `Content-MD5`/length (412), quota (413).
/// 200 with the file and its versions.
async fn overwrite(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PUT", &doc).await?;
    let o = Overwrite {
        content_type: header_str(&headers, header::CONTENT_TYPE).map(str::to_owned),
        size: announced_size(&headers, &q)?,
        md5: content_md5(&headers)?,
        executable: param(&q, "Executable").map(|v| v == "true"),
        tags: param(&q, "Tags").map(hearth_vfs::parse_tags),
        updated_at: param(&q, "UpdatedAt")
            .map(str::to_owned)
            .or_else(|| date_header(&headers)),
        metadata: None,
        if_match: if_match(&headers, &q),
    };
    let doc = state
        .vfs
        .overwrite(&inst.0, &id, o, body_stream(body))
        .await?;
    file_with_versions(&state, &inst, &doc).await
}

// ---------------------------------------------------------------------------
// Handlers: reading

/// `GET /files/:id` (and `HEAD`) — spec core-api B.8.4: a directory with a page of
/// its children (`page[limit]` default 30, `page[cursor]`, `page[skip]`), or a file
/// with its old versions. 404 JSON:API.
async fn get_file(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "GET", &doc).await?;
    render(&state, &inst, &doc, &q, StatusCode::OK).await
}

/// `GET /files/metadata?Path=` — spec core-api B.8.4: as `GET /files/:id`, by path;
/// 404 JSON:API `file does not exist`.
async fn get_metadata(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let path =
        param(&q, "Path").ok_or_else(|| ApiError::bad_request("The Path parameter is required"))?;
    let doc = state.vfs.get_by_path(&inst.0, path).await?;
    allow(&state, &inst, &perm, "GET", &doc).await?;
    render(&state, &inst, &doc, &q, StatusCode::OK).await
}

/// `GET /files/trash` — spec core-api B.8.4: the items at the top of the trash, paged
/// like a directory (`page[limit]` 30, `page[cursor]`), `meta.count`.
async fn list_trash(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let trash = state.vfs.get(&inst.0, TRASH_DIR_ID).await?;
    allow(&state, &inst, &perm, "GET", &trash).await?;
    let p = paging(&q, hearth_vfs::DEFAULT_PAGE)?;
    let page = state
        .vfs
        .children(&inst.0, &trash, p.limit, p.cursor.as_deref(), p.skip)
        .await?;
    let mut body = json!({
        "data": page.docs.iter().map(|d| resource(&inst.0, d)).collect::<Vec<_>>(),
        "meta": {"count": page.count},
    });
    if let Some(next) = page.next {
        body["links"] = json!({"next": format!("/files/trash?page[limit]={}&page[cursor]={}", p.limit, pct_encode(&next))});
    }
    Ok(jsonapi(StatusCode::OK, &body))
}

/// `POST /files/_find` — spec core-api B.8.4: Mango on `io.cozy.files` (whole-type
/// GET); `meta.count` is `skip + n`, or 2147483646 with `links.next` when the page is
/// full.
async fn find(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
    raw: Bytes,
) -> Res {
    allow_whole(&perm, "GET")?;
    let body = parse_body(&raw)?;
    let mut query = FindQuery::parse(&body)?;
    let p = paging(&q, 100)?;
    if param(&q, "page[limit]").is_some() {
        query.limit = Some(p.limit);
    }
    if param(&q, "page[skip]").is_some() {
        query.skip = p.skip;
    }
    if let Some(c) = p.cursor {
        query.bookmark = Some(c);
    }
    let limit = match query.limit {
        Some(l) if l > 0 && l <= 1000 => l,
        _ => 100,
    };
    query.limit = Some(limit);
    let skip = query.skip;
    let (docs, res) = state.vfs.find(&inst.0, query).await?;
    let full = docs.len() >= limit;
    let count = if full {
        2_147_483_646
    } else {
        (skip + docs.len()) as u64
    };
    let mut meta = json!({"count": count, "execution_stats": {
        "total_keys_examined": res.stats.total_keys_examined,
        "total_docs_examined": res.stats.total_docs_examined,
        "total_quorum_docs_examined": 0,
        "results_returned": res.stats.results_returned,
        "execution_time_ms": res.stats.execution_time_ms,
    }});
    if let Some(w) = res.warning {
        meta["warning"] = Value::String(w);
    }
    let mut out = json!({"data": docs.iter().map(|d| resource(&inst.0, d)).collect::<Vec<_>>(), "meta": meta});
    if full && !res.bookmark.is_empty() {
        out["links"] =
            json!({"next": format!("/files/_find?page[cursor]={}", pct_encode(&res.bookmark))});
    }
    Ok(jsonapi(StatusCode::OK, &out))
}

// ---------------------------------------------------------------------------
// Handlers: downloads

/// `GET /files/download/:id` (and `HEAD`) — spec core-api B.8.4: the content, streamed;
/// `Range` (206, 416), `ETag` (the MD5) and `If-None-Match` (304),
/// `Content-Disposition` (`inline`, `attachment` with `Dl=1`), `Last-Modified`.
async fn download(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "GET", &doc).await?;
    send_file(&state, &inst, &doc, &q, &headers).await
}

/// `GET /files/download?Path=` — spec core-api B.8.4: as `GET /files/download/:id`.
async fn download_by_path(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res {
    let path =
        param(&q, "Path").ok_or_else(|| ApiError::bad_request("The Path parameter is required"))?;
    let doc = state.vfs.get_by_path(&inst.0, path).await?;
    allow(&state, &inst, &perm, "GET", &doc).await?;
    send_file(&state, &inst, &doc, &q, &headers).await
}

/// `GET /files/:id/thumbnails/:secret/:format` (and `HEAD`) — spec core-api B.8.4: a
/// thumbnail of an image, JPEG, without a token: the secret of the file's `links`
/// (signed for the file, its content and 10 to 20 minutes) is the permission. Formats
/// `small`, `medium`, `large`, and `tiny` (served by `small`). 403 for a wrong or
/// expired secret; 404 for a missing file, an unknown format or a thumbnail not made
/// (yet).
async fn thumbnail(
    State(state): State<AppState>,
    inst: Inst,
    Path((id, secret, format)): Path<(String, String, String)>,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    if doc.is_dir() {
        return Err(ApiError::not_found("a directory has no thumbnail").into());
    }
    let Some(expires) = thumbs::check_thumbnail_secret(&inst.0, &doc, &secret) else {
        return Err(ApiError::forbidden("This thumbnail link is invalid or has expired").into());
    };
    let thumb = state.vfs.open_thumbnail(&inst.0, &doc.id, &format).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut res = Response::new(reader_body(thumb.reader));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(thumb.size));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The URL names the content (its MD5 is signed in it): cacheable while it is valid.
    if let Ok(v) =
        HeaderValue::from_str(&format!("private, max-age={}", expires.saturating_sub(now)))
    {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(res)
}

/// What a `Range` header asks for a content of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No range, or one this server ignores (several ranges, bad syntax): all of it.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing of it exists (416).
    Unsatisfiable,
}

fn parse_range(value: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(size.saturating_sub(n), size - 1)
            }
        }
        (Some(start), end) if b.is_empty() || end.is_some() => {
            if start >= size {
                return RangeAsk::Unsatisfiable;
            }
            match end {
                Some(e) if e < start => RangeAsk::Whole,
                Some(e) => RangeAsk::Part(start, e.min(size - 1)),
                None => RangeAsk::Part(start, size - 1),
            }
        }
        _ => RangeAsk::Whole,
    }
}

/// Whether `If-None-Match` names this ETag.
fn etag_matches(h: &HeaderMap, etag: &str) -> bool {
    header_str(h, header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
    })
}

/// `Content-Disposition` with an ASCII-safe `filename`, plus `filename*` when the
/// name had to be altered.
fn content_disposition(kind: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && !matches!(c, '"' | '/' | '\\'))
        .collect();
    let safe = if safe.trim().is_empty() {
        "download".to_owned()
    } else {
        safe
    };
    if safe == name {
        format!("{kind}; filename=\"{safe}\"")
    } else {
        format!(
            "{kind}; filename=\"{safe}\"; filename*=UTF-8''{}",
            pct_encode(name)
        )
    }
}

/// Percent-encodes everything but RFC 5987 `attr-char`s.
fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The content as a stream of 64 KiB chunks: memory stays flat whatever the size.
fn reader_body(reader: BlobReader) -> Body {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::try_unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), r)))
    });
    Body::from_stream(stream)
}

async fn send_file(
    state: &AppState,
    inst: &Inst,
    doc: &FileDoc,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Res {
    if doc.is_dir() {
        return Err(ApiError::bad_request("A directory cannot be downloaded").into());
    }
    let size = doc.size();
    let etag = format!("\"{}\"", doc.md5sum());
    let mut h = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(header::ETAG, &etag);
    set(header::ACCEPT_RANGES, "bytes");
    if let Some(secs) = hearth_core::parse_rfc3339(doc.updated_at()) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        set(header::LAST_MODIFIED, &httpdate::fmt_http_date(t));
    }
    if etag_matches(headers, &etag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().extend(h);
        return Ok(res);
    }
    let kind = if bool_param(q, "Dl") || param(q, "Dl") == Some("1") {
        "attachment"
    } else {
        "inline"
    };
    set(
        header::CONTENT_DISPOSITION,
        &content_disposition(kind, doc.name()),
    );
    let mime = if doc.mime().is_empty() {
        "application/octet-stream"
    } else {
        doc.mime()
    };
    set(header::CONTENT_TYPE, mime);
    let (status, offset, len) = match parse_range(header_str(headers, header::RANGE), size) {
        RangeAsk::Whole => (StatusCode::OK, 0, size),
        RangeAsk::Part(start, end) => {
            set(
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAsk::Unsatisfiable => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("The range is outside of the file ({size} bytes)"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    set(header::CONTENT_LENGTH, &len.to_string());
    let reader = state.vfs.open(&inst.0, doc, offset, Some(len)).await?;
    let mut res = Response::new(reader_body(reader));
    *res.status_mut() = status;
    res.headers_mut().extend(h);
    Ok(res)
}

// ---------------------------------------------------------------------------
// Handlers: changes and the trash

/// `PATCH /files/:id` — spec core-api B.8.4: `{data:{attributes:{name?, dir_id?,
/// tags?, executable?, updated_at?, metadata?, cozyMetadata:{favorite?},
/// move_to_trash?, permanent_delete?}, relationships?:{parent:{data:{id}}}}}`;
/// `If-Match` or `?rev=` (412); 409 name taken; 400 moved into itself.
async fn patch_file(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Res {
    let body = parse_body(&raw)?;
    let data = body.get("data").unwrap_or(&body);
    let empty = JsonMap::new();
    let attrs = data
        .get("attributes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PATCH", &doc).await?;
    let rev = if_match(&headers, &q);
    if attrs.get("permanent_delete").and_then(Value::as_bool) == Some(true) {
        allow(&state, &inst, &perm, "DELETE", &doc).await?;
        state
            .vfs
            .destroy(&inst.0, &id, rev.as_deref(), false)
            .await?;
        return Ok(jsonapi(
            StatusCode::OK,
            json!({"data": resource(&inst.0, &doc)}),
        ));
    }
    if attrs.get("move_to_trash").and_then(Value::as_bool) == Some(true) {
        let doc = state.vfs.trash(&inst.0, &id, rev.as_deref()).await?;
        return Ok(jsonapi(
            StatusCode::OK,
            json!({"data": resource(&inst.0, &doc)}),
        ));
    }
    let string = |k: &str| -> Result<Option<String>, ApiError> {
        match attrs.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid_attribute(
                k,
                format!("{k} must be a string"),
            )),
        }
    };
    let parent = data
        .pointer("/relationships/parent/data/id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tags = match attrs.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|t| t.as_str().map(|s| s.trim().to_owned()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::invalid_attribute("tags", "tags must be strings"))?,
        ),
        Some(_) => return Err(ApiError::invalid_attribute("tags", "tags must be an array").into()),
    };
    let p = Patch {
        name: string("name")?,
        dir_id: parent.or(string("dir_id")?),
        tags,
        executable: attrs.get("executable").and_then(Value::as_bool),
        updated_at: string("updated_at")?,
        metadata: attrs.get("metadata").and_then(Value::as_object).cloned(),
        favorite: attrs
            .get("cozyMetadata")
            .and_then(|m| m.get("favorite"))
            .and_then(Value::as_bool),
        if_match: rev,
    };
    if let Some(target) = p.dir_id.as_deref().filter(|d| *d != doc.dir_id()) {
        let target = state.vfs.get(&inst.0, target).await.map_err(|e| match e {
            VfsError::NotFound(_) => VfsError::NotFound("the target directory does not exist"),
            e => e,
        })?;
        allow(&state, &inst, &perm, "PATCH", &target).await?;
    }
    let doc = state.vfs.patch(&inst.0, &id, p).await?;
    render(&state, &inst, &doc, &q, StatusCode::OK).await
}

/// `DELETE /files/:id` — spec core-api B.8.4: put in the trash (needs PATCH); the
/// former parent path in `restore_path`; `If-Match` (412); 400 already trashed.
async fn trash_file(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PATCH", &doc).await?;
    let rev = if_match(&headers, &q);
    let doc = state.vfs.trash(&inst.0, &id, rev.as_deref()).await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": resource(&inst.0, &doc)}),
    ))
}

/// `POST /files/trash/:id` — spec core-api B.8.4: restore to `restore_path`
/// (recreated when missing); 400 when not in the trash.
async fn restore(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PATCH", &doc).await?;
    let doc = state.vfs.restore(&inst.0, &id).await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": resource(&inst.0, &doc)}),
    ))
}

/// `DELETE /files/trash/:id` — spec core-api B.8.4: destroy something in the trash,
/// content and versions included (needs DELETE); `If-Match` (412); 204.
async fn destroy(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "DELETE", &doc).await?;
    let rev = if_match(&headers, &q);
    state
        .vfs
        .destroy(&inst.0, &id, rev.as_deref(), true)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /files/trash` — spec core-api B.8.4: empty the trash (whole-type DELETE);
/// the content is removed before answering 204.
async fn empty_trash(State(state): State<AppState>, inst: Inst, perm: Perm) -> Res {
    allow_whole(&perm, "DELETE")?;
    state.vfs.empty_trash(&inst.0).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------
// Handlers: references

/// `{data: [{type, id}]}` or `{data: {type, id}}`.
fn refs_of(raw: &[u8]) -> Result<Vec<Value>, ApiError> {
    let body = parse_body(raw)?;
    let items = match body.get("data") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => {
            return Err(ApiError::bad_request(
                "data must be a reference or an array of references",
            ));
        }
    };
    items
        .into_iter()
        .map(|r| match (r.get("type"), r.get("id")) {
            (Some(Value::String(t)), Some(Value::String(i))) if !t.is_empty() && !i.is_empty() => {
                Ok(json!({"type": t, "id": i}))
            }
            _ => Err(ApiError::bad_request("a reference needs a type and an id")),
        })
        .collect()
}

fn refs_answer(doc: &FileDoc) -> Response {
    let refs = doc.referenced_by();
    jsonapi(
        StatusCode::OK,
        json!({"data": refs, "meta": {"rev": doc.rev, "count": refs.len()}}),
    )
}

/// `GET /files/:id/relationships/referenced_by` — spec core-api B.8.4: the documents
/// referencing a file, `meta.count`.
async fn list_references(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
) -> Res {
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "GET", &doc).await?;
    let refs = doc.referenced_by();
    Ok(jsonapi(
        StatusCode::OK,
        json!({
            "data": refs,
            "meta": {"count": refs.len()},
            "links": {"self": format!("/files/{id}/relationships/referenced_by")},
        }),
    ))
}

/// `POST /files/:id/relationships/referenced_by` — spec core-api B.8.4: add
/// references; 200 `{data: [all refs], meta: {rev, count}}`.
async fn add_references(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    raw: Bytes,
) -> Res {
    let refs = refs_of(&raw)?;
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PATCH", &doc).await?;
    let doc = state.vfs.add_references(&inst.0, &id, refs).await?;
    Ok(refs_answer(&doc))
}

/// `DELETE /files/:id/relationships/referenced_by` — spec core-api B.8.4: remove
/// references; 200 `{data: [remaining refs], meta: {rev, count}}`.
async fn remove_references(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Path(id): Path<String>,
    raw: Bytes,
) -> Res {
    let refs = refs_of(&raw)?;
    let doc = state.vfs.get(&inst.0, &id).await?;
    allow(&state, &inst, &perm, "PATCH", &doc).await?;
    let doc = state.vfs.remove_references(&inst.0, &id, refs).await?;
    Ok(refs_answer(&doc))
}

// ---------------------------------------------------------------------------
// Disk usage

/// `GET /settings/disk-usage[?include=trash]` — spec core-api B.9: `used`, `quota`
/// (absent when unlimited), `files`, `versions` (and `trash`), all strings. Allowed
/// with GET on `io.cozy.settings` (or this id), or any rule granting POST on files.
async fn disk_usage(
    State(state): State<AppState>,
    inst: Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    const ID: &str = "io.cozy.settings.disk-usage";
    let allowed = perm.set.allows_whole_type("GET", "io.cozy.settings")
        || perm.set.allows_doc("GET", "io.cozy.settings", ID, None)
        || perm.set.rules.iter().any(|r| {
            r.doctype == FILES && (r.verbs.is_empty() || r.verbs.iter().any(|v| v == "POST"))
        });
    if !allowed {
        return Err(FilesError::Forbidden);
    }
    let usage = state.vfs.usage(&inst.0).await?;
    let mut attrs = json!({
        "used": usage.total().to_string(),
        "files": usage.files.to_string(),
        "versions": usage.versions.to_string(),
    });
    if let Some(quota) = hearth_vfs::quota_of(&inst.0) {
        attrs["quota"] = Value::String(quota.to_string());
    }
    if param(&q, "include") == Some("trash") {
        attrs["trash"] = Value::String(state.vfs.trash_usage(&inst.0).await?.to_string());
    }
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": {
            "type": "io.cozy.settings",
            "id": ID,
            "attributes": attrs,
            "meta": {},
            "links": {"self": "/settings/disk-usage"},
        }}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |v: &str| parse_range(Some(v), 100);
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(r("bytes=0-9"), RangeAsk::Part(0, 9));
        assert_eq!(r("bytes=90-"), RangeAsk::Part(90, 99));
        assert_eq!(r("bytes=-10"), RangeAsk::Part(90, 99));
        assert_eq!(r("bytes=-1000"), RangeAsk::Part(0, 99));
        assert_eq!(r("bytes=50-1000"), RangeAsk::Part(50, 99));
        assert_eq!(r("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), RangeAsk::Whole);
        assert_eq!(r("bytes=9-3"), RangeAsk::Whole);
        assert_eq!(r("items=0-1"), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("inline", "a.txt"),
            "inline; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition("attachment", "été \"x\".txt"),
            "attachment; filename=\"t x.txt\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.txt"
        );
        assert!(content_disposition("inline", "ééé").contains("filename=\"download\""));
    }

    #[test]
    fn resources_follow_the_wire_shape() {
        let doc = FileDoc {
            id: "f".into(),
            rev: "1-a".into(),
            path: "/d/x.txt".into(),
            body:
                json!({"type": "file", "name": "x.txt", "dir_id": "d", "size": 5, "trashed": false,
                "referenced_by": [{"type": "io.cozy.albums", "id": "1"}]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let inst = Instance {
            session_secret: "c2VjcmV0".into(),
            ..Default::default()
        };
        let r = resource(&inst, &doc);
        assert_eq!(r["attributes"]["size"], "5");
        assert_eq!(r["attributes"]["path"], "/d/x.txt");
        assert!(r["attributes"].get("referenced_by").is_none());
        assert!(r["attributes"].get("_id").is_none());
        assert_eq!(r["meta"]["rev"], "1-a");
        assert_eq!(r["relationships"]["referenced_by"]["data"][0]["id"], "1");
        assert_eq!(r["relationships"]["parent"]["data"]["id"], "d");
        let dir = FileDoc {
            id: "d".into(),
            rev: "1-b".into(),
            path: "/d".into(),
            body: json!({"type": "directory", "name": "d", "dir_id": ROOT_DIR_ID, "path": "/d", "trashed": false})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        assert!(resource(&inst, &dir)["attributes"].get("trashed").is_none());
        assert!(r["links"].get("small").is_none(), "not an image");
        let mut image = doc.clone();
        image.body.insert("class".into(), json!("image"));
        image.body.insert("mime".into(), json!("image/png"));
        let links = &resource(&inst, &image)["links"];
        for format in ["tiny", "small", "medium", "large"] {
            let link = links[format].as_str().unwrap_or_default();
            assert!(
                link.starts_with("/files/f/thumbnails/") && link.ends_with(&format!("/{format}")),
                "{link}"
            );
        }
        image.body.insert("mime".into(), json!("image/gif"));
        assert!(
            resource(&inst, &image)["links"].get("small").is_none(),
            "no link that cannot work"
        );
    }
}
