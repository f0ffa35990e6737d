//! Small workers: `log`, `trash-files`, `clean-sessions`.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_instances::Instances;
use hearth_vfs::Vfs;

use crate::{JobContext, JobError, Worker};

/// Writes its message to the log; does nothing else (tests, benchmarks, debugging).
pub struct Log;

#[async_trait]
impl Worker for Log {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        tracing::info!(domain = %ctx.instance.domain, job = %ctx.job.id, message = %ctx.job.message, "log job");
        Ok(())
    }
}

/// Empties the trash in the background.
pub struct TrashFiles {
    pub vfs: Arc<Vfs>,
}

#[async_trait]
impl Worker for TrashFiles {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        self.vfs
            .empty_trash(&ctx.instance)
            .await
            .map_err(|e| JobError::retry(format!("cannot empty the trash: {e}")))
    }
}

/// Removes expired sessions.
pub struct CleanSessions {
    pub instances: Arc<Instances>,
}

#[async_trait]
impl Worker for CleanSessions {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let n = self
            .instances
            .clean_expired_sessions(&ctx.instance)
            .await
            .map_err(|e| JobError::retry(format!("cannot clean sessions: {e}")))?;
        tracing::info!(domain = %ctx.instance.domain, removed = n, "expired sessions removed");
        Ok(())
    }
}
