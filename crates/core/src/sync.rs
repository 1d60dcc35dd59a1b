//! The one lock-poisoning policy: a poisoned lock is taken over, never skipped and never
//! turned into an error. Every `std::sync` lock in this crate guards a cache or a value
//! replaced in one assignment (the keyring, compiled policies, credentials, `?wait`
//! registrations), so a panic elsewhere while holding it cannot leave it half-written;
//! skipping it instead would silently drop a key reload or a cache update.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks a mutex, taking it over if a panicking holder poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, taking the lock over if a panicking writer poisoned it.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, taking the lock over if a panicking holder poisoned it.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_last_value() {
        let l = std::sync::Arc::new(RwLock::new(1));
        let l2 = l.clone();
        let _ = std::thread::spawn(move || {
            let mut g = l2.write().unwrap();
            *g = 2;
            panic!("poison it");
        })
        .join();
        assert!(l.is_poisoned());
        *write(&l) = 3;
        assert_eq!(*read(&l), 3);
        let m = Mutex::new(vec![1]);
        lock(&m).push(2);
        assert_eq!(*lock(&m), vec![1, 2]);
    }
}
