//! Locking the stand-ins' shared state. A test that panics while a handler holds a lock
//! must not wedge every later request of the same stand-in, and no state here is left
//! half-written by a panic that matters to a test, so a poisoned lock is simply taken.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
