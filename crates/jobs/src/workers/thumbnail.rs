//! `thumbnail`: makes the small/medium/large thumbnails of an image file when it
//! is created or its content changes, and removes them with the file. Pushed by the
//! internal trigger on `io.cozy.files` events, or by hand with `{"file_id": …}`.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_vfs::{Vfs, VfsError};
use serde_json::Value;

use crate::{JobContext, JobError, Worker};

pub struct Thumbnail {
    pub vfs: Arc<Vfs>,
}

#[async_trait]
impl Worker for Thumbnail {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let (verb, id) = match &ctx.job.event {
            Some(event) => (
                event
                    .get("verb")
                    .and_then(Value::as_str)
                    .unwrap_or("CREATED"),
                event.pointer("/doc/_id").and_then(Value::as_str),
            ),
            None => (
                "CREATED",
                ctx.job.message.get("file_id").and_then(Value::as_str),
            ),
        };
        let id = id.ok_or_else(|| JobError::fatal("no file to make thumbnails of"))?;
        let inst = &ctx.instance;
        let deleted = verb == "DELETED"
            || ctx
                .job
                .event
                .as_ref()
                .and_then(|e| e.pointer("/doc/_deleted"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if deleted {
            return self
                .vfs
                .remove_thumbnails(inst, id)
                .await
                .map_err(|e| JobError::retry(format!("cannot remove thumbnails: {e}")));
        }
        match self.vfs.make_thumbnails(inst, id).await {
            Ok(_) => Ok(()),
            // Gone since the event: nothing to do.
            Err(VfsError::NotFound(_)) => Ok(()),
            // Not an image we can read: another try would fail the same way.
            Err(e @ VfsError::BadImage(_)) => {
                Err(JobError::fatal(format!("cannot make thumbnails: {e}")))
            }
            Err(e) => Err(JobError::retry(format!("cannot make thumbnails: {e}"))),
        }
    }
}
