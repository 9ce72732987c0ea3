//! Locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex` whether or not an earlier holder panicked. What promcast
/// keeps behind a mutex (history and forecast caches, the model registry,
/// the last upstream error, the turn to train) is updated by plain
/// collection operations, with no I/O and nothing that panics short of a
/// bug. Were one to panic part-way, serving on with what it left beats
/// poisoning, which would turn one failed request into every later one
/// failing.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
