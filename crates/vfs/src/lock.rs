//! [`InstanceLock`]: a lock shared by several nodes sharing one store, so that the
//! tree changes of an instance are serialized across nodes, not only within one.
//!
//! One node needs none: [`Vfs`](crate::Vfs) serializes an instance's changes with an
//! in-process mutex, and only takes the shared lock, in addition, when one was given
//! ([`Vfs::set_instance_lock`](crate::Vfs::set_instance_lock)). The mutex is taken
//! first, so a node has at most one request waiting for the shared lock per instance.

use std::future::Future;
use std::pin::Pin;

/// What [`InstanceLock::lock`] hands back: the lock is held until it is dropped.
pub type HeldLock = Box<dyn Send + Sync>;

/// The future of [`InstanceLock::lock`].
pub type LockFuture<'a> = Pin<Box<dyn Future<Output = Result<HeldLock, LockError>> + Send + 'a>>;

/// The shared lock could not be taken: its backend failed, or another holder kept
/// it longer than the implementation waits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockError(pub String);

/// Locks by name shared by the nodes (for example in Redis), held until the
/// returned value is dropped. An implementation bounds how long it waits, and how
/// long a crashed holder keeps a lock.
pub trait InstanceLock: Send + Sync {
    fn lock<'a>(&'a self, name: &'a str) -> LockFuture<'a>;
}
