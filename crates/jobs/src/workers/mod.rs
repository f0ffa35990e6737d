//! The built-in workers and their default limits.

mod basic;
pub mod konnector;
mod process;
mod sendmail;
pub mod service;
mod thumbnail;

use std::sync::Arc;
use std::time::Duration;

use hearth_instances::Instances;
use hearth_mail::Mailer;
use hearth_vfs::Vfs;

use crate::model::EventRule;
use crate::{Jobs, WorkerLimits};

pub use sendmail::SendMail;

/// What the built-in workers work with.
#[derive(Clone)]
pub struct Builtins {
    pub instances: Arc<Instances>,
    pub vfs: Arc<Vfs>,
    pub mailer: Arc<Mailer>,
    pub apps: Arc<hearth_apps::Apps>,
    /// The command that runs konnectors and web apps' services (`konnectors.cmd`);
    /// `None`: their jobs fail with a clear error.
    pub konnectors_cmd: Option<std::path::PathBuf>,
}

fn limits(
    concurrency: usize,
    max_exec_count: u32,
    timeout_secs: u64,
    reserved: bool,
) -> WorkerLimits {
    WorkerLimits {
        concurrency,
        max_exec_count,
        timeout: Duration::from_secs(timeout_secs),
        reserved,
    }
}

/// Registers `log`, `sendmail`, `thumbnail`, `trash-files`, `clean-sessions`,
/// `konnector`, `account-deleted` and `service` (web apps' services), and the
/// internal triggers that make thumbnails of images and run the `on_delete_account`
/// hook of konnectors.
pub fn register(jobs: &Jobs, b: &Builtins) {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    jobs.register("log", Arc::new(basic::Log), limits(4, 1, 10, false));
    jobs.register(
        "sendmail",
        Arc::new(sendmail::SendMail::new(
            b.instances.clone(),
            b.mailer.clone(),
        )),
        limits(4, 3, 60, false),
    );
    jobs.register(
        "thumbnail",
        Arc::new(thumbnail::Thumbnail { vfs: b.vfs.clone() }),
        limits(cores, 2, 60, true),
    );
    jobs.register(
        "trash-files",
        Arc::new(basic::TrashFiles { vfs: b.vfs.clone() }),
        limits(2, 2, 600, false),
    );
    jobs.register(
        "clean-sessions",
        Arc::new(basic::CleanSessions {
            instances: b.instances.clone(),
        }),
        limits(1, 2, 60, true),
    );
    let konnectors = Arc::new(konnector::KonnectorRunner::new(
        b.instances.clone(),
        b.apps.clone(),
        b.konnectors_cmd.clone(),
    ));
    jobs.register(
        "konnector",
        Arc::new(konnector::Konnector(konnectors.clone())),
        limits(2, 2, 300, false),
    );
    // `COZY_TIME_LIMIT` announces the timeout the operator may have changed.
    if let Some((_, l)) = jobs
        .worker_types()
        .into_iter()
        .find(|(name, _)| name == "konnector")
    {
        konnectors.set_timeout(l.timeout);
    }
    jobs.register(
        "account-deleted",
        Arc::new(konnector::AccountDeleted(konnectors)),
        limits(2, 2, 300, true),
    );
    // The services of web apps, on the triggers their install creates; they run
    // through `konnectors.cmd` too.
    let services = Arc::new(service::Service::new(
        b.apps.clone(),
        b.konnectors_cmd.clone(),
    ));
    jobs.register("service", services.clone(), limits(2, 1, 200, true));
    if let Some((_, l)) = jobs
        .worker_types()
        .into_iter()
        .find(|(name, _)| name == "service")
    {
        services.set_timeout(l.timeout);
    }
    // A deleted account: its konnector's `on_delete_account` hook, if it has one.
    if let Ok(deleted) = EventRule::parse("io.cozy.accounts:DELETED") {
        jobs.add_internal_trigger(vec![deleted], "account-deleted");
    }
    // Thumbnails of images: on creation, on a new content, and removed with them.
    if let (Ok(images), Ok(content)) = (
        EventRule::parse("io.cozy.files:CREATED,UPDATED,DELETED:image:class"),
        EventRule::parse("io.cozy.files:ALL:!=:md5sum"),
    ) {
        jobs.add_internal_trigger(vec![images, content], "thumbnail");
    }
}
