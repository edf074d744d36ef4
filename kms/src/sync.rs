//! A `std` mutex taken even when poisoned: the values behind the node's
//! locks (counters, pools, health, peer state) are consistent between
//! statements, so a panic on another thread while it held one must not
//! take every later caller (and the node) down with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m`, taking over a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
