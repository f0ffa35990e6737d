//! The two phases of an export (spec move 1.1): the job ([`Exports::create`]) and
//! the download of one part ([`Exports::open_part`], [`Part::write`]).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use hearth_core::JsonMap;
use hearth_instances::Instance;
use hearth_store::{AllDocsQuery, StoreError};
use hearth_vfs::{FileDoc, ROOT_DIR_ID};
use serde_json::Value;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::zip::{EntryMeta, ZipWriter};
use crate::{
    ExportDoc, ExportOptions, Exports, FILES, MAX_AGE_NS, MoveError, MoveResult,
    RUNNING_WINDOW_SECS, STATE_DONE, STATE_ERROR, STATE_EXPORTING, VERSIONS, dt, now_secs,
};

const PAGE: usize = 1000;
const DATA: &str = "My Cozy/Data";
const FILES_DIR: &str = "My Cozy/Files";
/// Secrets stripped from `instance.json` (spec move 1.5).
const SECRETS: [&str; 7] = [
    "passphrase_hash",
    "passphrase_reset_token",
    "passphrase_reset_time",
    "register_token",
    "session_secret",
    "oauth_secret",
    "cli_secret",
];

/// The file name of a part (`My Cozy.zip`, `My Cozy - part001.zip`); `prefix` is
/// `My Cozy` for users, the domain on the admin API.
pub fn part_file_name(prefix: &str, doc: &ExportDoc, index: usize) -> String {
    match &doc.parts_cursors {
        Some(c) if !c.is_empty() => format!("{prefix} - part{index:03}.zip"),
        _ => format!("{prefix}.zip"),
    }
}

/// Percent-encodes every byte but ASCII letters, digits and `keep`.
pub(crate) fn percent_escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes a doctype as a URL path segment (Go's `url.PathEscape`).
fn path_escape(s: &str) -> String {
    percent_escape(s, b"-._~$&+=:@")
}

/// The bucket size (spec move 1.4 step 2).
pub(crate) fn bucket_size(requested: i64, usage: u64, min: i64) -> i64 {
    if requested >= min {
        return requested;
    }
    let minf = min as f64;
    let u = usage as f64;
    if u > minf {
        ((u / minf).sqrt() * minf) as i64
    } else {
        min
    }
}

/// The part splitter (spec move 1.6), fed ids in `_all_docs` order.
pub(crate) struct Splitter {
    p: i64,
    room: i64,
    pub(crate) cursors: Vec<String>,
    /// The bytes of every file and version seen.
    pub(crate) total: i64,
}

impl Splitter {
    pub(crate) fn new(p: i64) -> Self {
        Self {
            p,
            room: p,
            cursors: Vec::new(),
            total: 0,
        }
    }

    pub(crate) fn add(&mut self, doctype: &str, id: &str, size: i64) {
        if size > self.room && self.room != self.p {
            self.cursors.push(format!("{doctype}/{id}"));
            self.room = self.p;
        }
        self.room -= size;
        self.total = self.total.saturating_add(size.max(0));
    }
}

fn size_of(doc: &JsonMap) -> i64 {
    match doc.get("size") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn str_of<'a>(doc: &'a JsonMap, k: &str) -> &'a str {
    doc.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The tar being written by a blocking thread, fed through a channel.
struct TarSink {
    tx: mpsc::Sender<(String, Vec<u8>)>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    bytes: i64,
}

impl TarSink {
    fn start(path: PathBuf, mtime: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(&path)?;
        let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(64);
        let done = tokio::task::spawn_blocking(move || {
            let gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::best(),
            );
            let mut tar = tar::Builder::new(gz);
            while let Some((name, bytes)) = rx.blocking_recv() {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o640);
                h.set_mtime(mtime);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, &name, bytes.as_slice())?;
            }
            let gz = tar.into_inner()?;
            let mut w = gz.finish()?;
            w.flush()?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        });
        Ok(Self { tx, done, bytes: 0 })
    }

    async fn add(&mut self, name: String, doc: &JsonMap) -> MoveResult<()> {
        let bytes = serde_json::to_vec(doc).map_err(|e| MoveError::Invalid(e.to_string()))?;
        self.bytes += bytes.len() as i64;
        if self.tx.send((name, bytes)).await.is_err() {
            return Err(MoveError::Io(std::io::Error::other(
                "the archive writer stopped",
            )));
        }
        Ok(())
    }

    async fn finish(self) -> MoveResult<i64> {
        drop(self.tx);
        self.done
            .await
            .map_err(|e| MoveError::Io(std::io::Error::other(e.to_string())))??;
        Ok(self.bytes)
    }
}

impl Exports {
    /// Runs an export job (spec move 1.4): checks that none is running, removes the
    /// archives of the previous ones, inserts the document (`exporting`), writes the
    /// stored archive and the cursors, then records `done` (or `error`, answered as
    /// an error too).
    pub async fn create(&self, inst: &Instance, opts: &ExportOptions) -> MoveResult<ExportDoc> {
        let started = Instant::now();
        let previous = self.list(&inst.domain).await?;
        let now = now_secs();
        for p in &previous {
            let created = hearth_core::parse_rfc3339(&p.created_at).unwrap_or(0);
            if p.state == STATE_EXPORTING && now.saturating_sub(created) < RUNNING_WINDOW_SECS {
                return Err(MoveError::Conflict);
            }
        }
        for p in &previous {
            match tokio::fs::remove_file(self.archive_path(&inst.domain, &p.id)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, export = %p.id, "cannot remove an old export archive");
                }
                _ => {}
            }
        }
        let usage = self.vfs.usage(inst).await?.total();
        let max_age = if opts.max_age <= 0 || opts.max_age > MAX_AGE_NS {
            MAX_AGE_NS
        } else {
            opts.max_age
        };
        let mut doc = ExportDoc {
            id: String::new(),
            rev: String::new(),
            domain: inst.domain.clone(),
            parts_size: bucket_size(opts.parts_size, usage, self.min_parts_size),
            parts_cursors: None,
            with_doctypes: opts.with_doctypes.clone(),
            state: STATE_EXPORTING.into(),
            created_at: hearth_core::now_rfc3339(),
            expires_at: hearth_core::rfc3339(now + (max_age / 1_000_000_000) as u64),
            total_size: -1,
            files_size: 0,
            creation_duration: 0,
            error: String::new(),
        };
        self.save(&inst.instance_id(), &mut doc).await?;
        let res = self.snapshot(inst, &mut doc, now).await;
        doc.creation_duration = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        match res {
            Ok(total) => {
                doc.state = STATE_DONE.into();
                doc.total_size = total;
                self.save(&inst.instance_id(), &mut doc).await?;
                Ok(doc)
            }
            Err(e) => {
                doc.state = STATE_ERROR.into();
                doc.error = e.to_string();
                let _ = tokio::fs::remove_file(self.archive_path(&inst.domain, &doc.id)).await;
                if let Err(se) = self.save(&inst.instance_id(), &mut doc).await {
                    tracing::error!(error = %se, export = %doc.id, "cannot record a failed export");
                }
                Err(e)
            }
        }
    }

    /// Writes the stored archive and computes the cursors; answers the JSON bytes.
    async fn snapshot(&self, inst: &Instance, doc: &mut ExportDoc, mtime: u64) -> MoveResult<i64> {
        let mut tar = TarSink::start(self.archive_path(&inst.domain, &doc.id), mtime)?;
        let res = self.fill(inst, doc, &mut tar).await;
        let bytes = tar.finish().await;
        res?;
        bytes
    }

    async fn fill(
        &self,
        inst: &Instance,
        doc: &mut ExportDoc,
        tar: &mut TarSink,
    ) -> MoveResult<()> {
        let mut me = match serde_json::to_value(inst) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        };
        for k in SECRETS {
            me.shift_remove(k);
        }
        for k in ["swift_cluster", "couch_cluster", "indexes_version"] {
            if me.contains_key(k) {
                me.insert(k.into(), Value::from(0));
            }
        }
        tar.add("instance.json".into(), &me).await?;
        let id = inst.instance_id();
        let mut doctypes: Vec<String> = self
            .store
            .doctypes(&id)
            .await?
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        doctypes.sort();
        for name in &doctypes {
            if name == FILES || name == VERSIONS || !doc.accepts(name) {
                continue;
            }
            let escaped = path_escape(name);
            self.each_doc(
                inst,
                name,
                "",
                |d| {
                    let id = str_of(&d, "_id").to_owned();
                    if id.starts_with("_design/") {
                        return None;
                    }
                    Some((format!("{escaped}/{id}.json"), d))
                },
                tar,
            )
            .await?;
        }
        if !doc.accepts(FILES) {
            return Ok(());
        }
        // One pass on the files: directories kept (few, small) to be written parents
        // first; files only feed the splitter, in id order.
        let mut splitter = Splitter::new(doc.parts_size);
        let mut dirs: Vec<(String, JsonMap)> = Vec::new();
        let mut start = String::new();
        loop {
            let rows = self.page(inst, FILES, &start).await?;
            let last = rows.len() < PAGE;
            for d in rows {
                let id = str_of(&d, "_id").to_owned();
                start = id.clone();
                match str_of(&d, "type") {
                    "directory" => dirs.push((str_of(&d, "path").to_owned(), d)),
                    "file" => splitter.add(FILES, &id, size_of(&d)),
                    _ => {}
                }
            }
            if last {
                break;
            }
        }
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, d) in dirs {
            let name = format!("{FILES}/{}.json", str_of(&d, "_id"));
            tar.add(name, &d).await?;
        }
        if doc.accepts(VERSIONS) {
            let mut start = String::new();
            loop {
                let rows = self.page(inst, VERSIONS, &start).await?;
                let last = rows.len() < PAGE;
                for d in rows {
                    start = str_of(&d, "_id").to_owned();
                    splitter.add(VERSIONS, &start, size_of(&d));
                }
                if last {
                    break;
                }
            }
        }
        doc.parts_cursors = Some(splitter.cursors);
        doc.files_size = splitter.total;
        Ok(())
    }

    /// Every document of a doctype into the tar, in id order, through `f`.
    async fn each_doc(
        &self,
        inst: &Instance,
        doctype: &str,
        from: &str,
        f: impl Fn(JsonMap) -> Option<(String, JsonMap)>,
        tar: &mut TarSink,
    ) -> MoveResult<()> {
        let mut start = from.to_owned();
        loop {
            let rows = self.page(inst, doctype, &start).await?;
            let last = rows.len() < PAGE;
            for d in rows {
                start = str_of(&d, "_id").to_owned();
                if let Some((name, d)) = f(d) {
                    tar.add(name, &d).await?;
                }
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Up to [`PAGE`] live documents with ids after `after` (from the first when
    /// empty), in `_all_docs` order.
    async fn page(&self, inst: &Instance, doctype: &str, after: &str) -> MoveResult<Vec<JsonMap>> {
        page_of(&self.as_ref_parts(), inst, doctype, after, false).await
    }

    fn as_ref_parts(&self) -> ExportsRef {
        ExportsRef {
            store: self.store.clone(),
            vfs: self.vfs.clone(),
        }
    }

    /// Checks a download request (spec move 1.8): the cursor must be one of the
    /// document's (400 otherwise), the stored archive must still exist for part 0.
    pub async fn open_part(
        &self,
        inst: &Instance,
        doc: &ExportDoc,
        cursor: Option<&str>,
    ) -> MoveResult<Part> {
        if doc.state != STATE_DONE {
            return Err(MoveError::NotFound);
        }
        let cursors: &[String] = doc.parts_cursors.as_deref().unwrap_or(&[]);
        let (index, start, end) = match cursor.filter(|c| !c.is_empty()) {
            None => (0, None, cursors.first().cloned()),
            Some(c) => {
                let i = cursors
                    .iter()
                    .position(|x| x == c)
                    .ok_or(MoveError::BadCursor)?;
                (i + 1, Some(c.to_owned()), cursors.get(i + 1).cloned())
            }
        };
        let archive = if index == 0 {
            let path = self.archive_path(&inst.domain, &doc.id);
            match tokio::fs::File::open(&path).await {
                Ok(f) => Some(f.into_std().await),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(MoveError::NotFound);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(Part {
            index,
            start,
            end,
            files: doc.parts_cursors.is_some() && doc.accepts(FILES),
            versions: doc.parts_cursors.is_some() && doc.accepts(VERSIONS),
            archive,
            inst: inst.clone(),
            exports: self.as_ref_parts(),
        })
    }
}

/// What a part needs of the service, owned (a part is written by its own task).
struct ExportsRef {
    store: std::sync::Arc<dyn hearth_store::DocStore>,
    vfs: std::sync::Arc<hearth_vfs::Vfs>,
}

/// One part, checked and ready to be written.
pub struct Part {
    /// 0 for the first part.
    pub index: usize,
    start: Option<String>,
    end: Option<String>,
    files: bool,
    versions: bool,
    archive: Option<std::fs::File>,
    inst: Instance,
    exports: ExportsRef,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("index", &self.index)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

fn split_cursor(c: &str) -> (&str, &str) {
    c.split_once('/').unwrap_or((c, ""))
}

fn mtime_of(doc: &JsonMap) -> u64 {
    hearth_core::parse_rfc3339(str_of(doc, "updated_at")).unwrap_or_else(now_secs)
}

const META: EntryMeta = EntryMeta {
    mode: 0o640,
    mtime: 0,
};

impl Part {
    /// Streams the zip of this part to `w` (spec move 1.7); answers the writer.
    pub async fn write<W: AsyncWrite + Unpin + Send>(mut self, w: W) -> MoveResult<W> {
        let mut zip = ZipWriter::new(w);
        if let Some(file) = self.archive.take() {
            self.write_archive(&mut zip, file).await?;
        }
        let (sdt, sid) = self.start.as_deref().map_or((FILES, ""), split_cursor);
        let end = self.end.as_deref().map(split_cursor);
        if self.files && sdt == FILES {
            let stop = match end {
                Some((FILES, id)) => Some(id),
                _ => None,
            };
            self.write_files(&mut zip, sid, stop).await?;
        }
        let versions_here = !matches!(end, Some((FILES, _)));
        if self.versions && versions_here {
            let from = if sdt == VERSIONS { sid } else { "" };
            let stop = match end {
                Some((VERSIONS, id)) => Some(id),
                _ => None,
            };
            self.write_versions(&mut zip, from, stop).await?;
        }
        Ok(zip.finish().await?)
    }

    async fn write_archive<W: AsyncWrite + Unpin + Send>(
        &self,
        zip: &mut ZipWriter<W>,
        file: std::fs::File,
    ) -> MoveResult<()> {
        let (tx, mut rx) = mpsc::channel::<std::io::Result<(String, Vec<u8>)>>(16);
        let reader = tokio::task::spawn_blocking(move || {
            let run = || -> std::io::Result<()> {
                let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
                let mut archive = tar::Archive::new(gz);
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    if entry.header().entry_type() != tar::EntryType::Regular {
                        continue;
                    }
                    let name = entry.path()?.to_string_lossy().into_owned();
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut bytes)?;
                    if tx.blocking_send(Ok((name, bytes))).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let meta = EntryMeta {
            mtime: now_secs(),
            ..META
        };
        while let Some(item) = rx.recv().await {
            let (name, bytes) = item?;
            zip.add_bytes(&format!("{DATA}/{name}"), meta, &bytes)
                .await?;
        }
        let _ = reader.await;
        Ok(())
    }

    async fn write_files<W: AsyncWrite + Unpin + Send>(
        &self,
        zip: &mut ZipWriter<W>,
        from: &str,
        stop: Option<&str>,
    ) -> MoveResult<()> {
        let inst = &self.inst;
        let mut dirs: HashMap<String, String> = HashMap::new();
        let mut key = from.to_owned();
        let mut inclusive = true;
        loop {
            let rows = page_of(&self.exports, inst, FILES, &key, inclusive).await?;
            inclusive = false;
            let last = rows.len() < PAGE;
            for d in rows {
                let id = str_of(&d, "_id").to_owned();
                if stop.is_some_and(|s| id.as_str() >= s) {
                    return Ok(());
                }
                key = id.clone();
                if str_of(&d, "type") != "file" {
                    continue;
                }
                let parent = str_of(&d, "dir_id").to_owned();
                let parent_path = match dirs.get(&parent) {
                    Some(p) => p.clone(),
                    None => match self.exports.vfs.get(inst, &parent).await {
                        Ok(p) => {
                            if dirs.len() > 10_000 {
                                dirs.clear();
                            }
                            dirs.insert(parent.clone(), p.path.clone());
                            p.path
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, file = %id, "export: a file without its parent is skipped");
                            continue;
                        }
                    },
                };
                let name = str_of(&d, "name").to_owned();
                let path = if parent == ROOT_DIR_ID || parent_path == "/" {
                    format!("/{name}")
                } else {
                    format!("{parent_path}/{name}")
                };
                let mut body = d.clone();
                body.shift_remove("_id");
                let rev = match body.shift_remove("_rev") {
                    Some(Value::String(r)) => r,
                    _ => String::new(),
                };
                let fd = FileDoc {
                    id: id.clone(),
                    rev,
                    body,
                    path: path.clone(),
                };
                // Content first: a pair is written whole or not at all.
                let mut content = match self.exports.vfs.open(inst, &fd, 0, None).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, file = %id, "export: a file without content is skipped");
                        continue;
                    }
                };
                let mtime = mtime_of(&d);
                let json = serde_json::to_vec(&d).map_err(|e| MoveError::Invalid(e.to_string()))?;
                zip.add_bytes(
                    &format!("{DATA}/{FILES}/{id}.json"),
                    EntryMeta { mode: 0o640, mtime },
                    &json,
                )
                .await?;
                let exec = d.get("executable").and_then(Value::as_bool) == Some(true);
                zip.add_reader(
                    &format!("{FILES_DIR}{path}"),
                    EntryMeta {
                        mode: if exec { 0o750 } else { 0o640 },
                        mtime,
                    },
                    &mut content,
                )
                .await?;
            }
            if last {
                return Ok(());
            }
        }
    }

    async fn write_versions<W: AsyncWrite + Unpin + Send>(
        &self,
        zip: &mut ZipWriter<W>,
        from: &str,
        stop: Option<&str>,
    ) -> MoveResult<()> {
        let inst = &self.inst;
        let mut key = from.to_owned();
        let mut inclusive = true;
        loop {
            let rows = page_of(&self.exports, inst, VERSIONS, &key, inclusive).await?;
            inclusive = false;
            let last = rows.len() < PAGE;
            for d in rows {
                let id = str_of(&d, "_id").to_owned();
                if stop.is_some_and(|s| id.as_str() >= s) {
                    return Ok(());
                }
                key = id.clone();
                let Some((file_id, suffix)) = id.split_once('/') else {
                    continue;
                };
                let mut content = match self
                    .exports
                    .vfs
                    .blobs()
                    .open_version(&inst.domain, file_id, suffix)
                    .await
                {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, version = %id, "export: a version without content is skipped");
                        continue;
                    }
                };
                let mtime = mtime_of(&d);
                let json = serde_json::to_vec(&d).map_err(|e| MoveError::Invalid(e.to_string()))?;
                zip.add_bytes(
                    &format!("{DATA}/{VERSIONS}/{id}.json"),
                    EntryMeta { mode: 0o640, mtime },
                    &json,
                )
                .await?;
                zip.add_reader(
                    &format!("{FILES_DIR}/{id}"),
                    EntryMeta { mode: 0o640, mtime },
                    &mut content,
                )
                .await?;
            }
            if last {
                return Ok(());
            }
        }
    }
}

async fn page_of(
    ex: &ExportsRef,
    inst: &Instance,
    doctype: &str,
    key: &str,
    inclusive: bool,
) -> MoveResult<Vec<JsonMap>> {
    let q = AllDocsQuery {
        start_key: (!key.is_empty()).then(|| key.to_owned()),
        limit: Some(PAGE + 1),
        include_docs: true,
        inclusive_end: true,
        ..Default::default()
    };
    let rows = match ex
        .store
        .all_docs(&inst.instance_id(), &dt(doctype), &q)
        .await
    {
        Ok(r) => r.rows,
        Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut docs: Vec<JsonMap> = rows
        .into_iter()
        .filter(|r| !r.deleted)
        .filter(|r| inclusive || key.is_empty() || r.id != key)
        .filter_map(|r| r.doc)
        .collect();
    docs.truncate(PAGE);
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIN_PARTS_SIZE;

    #[test]
    fn spec_worked_example() {
        let mut s = Splitter::new(1000);
        for (id, size) in [("a", 600), ("b", 300), ("c", 200), ("d", 2000), ("e", 100)] {
            s.add(FILES, id, size);
        }
        for (id, size) in [("a/1", 50), ("c/1", 900)] {
            s.add(VERSIONS, id, size);
        }
        assert_eq!(
            s.cursors,
            [
                "io.cozy.files/c",
                "io.cozy.files/d",
                "io.cozy.files/e",
                "io.cozy.files.versions/c/1"
            ]
        );
    }

    #[test]
    fn bucket_sizes() {
        let g = MIN_PARTS_SIZE;
        assert_eq!(bucket_size(0, 0, g), g);
        assert_eq!(bucket_size(5, 4 * g as u64, g), 2 * g);
        assert_eq!(bucket_size(0, 100 * g as u64, g), 10 * g);
        assert_eq!(bucket_size(3 * g, 100 * g as u64, g), 3 * g);
    }
}
