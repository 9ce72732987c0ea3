//! Locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex` whether or not an earlier holder panicked. What promcast
/// keeps behind a mutex (history and model caches, the last upstream error,
/// the turn to train) is replaced whole rather than edited in steps, so a
/// panic cannot leave it half-written; poisoning would only turn one failed
/// request into every later one failing.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
