//! Which proxy worker thread runs the current code, a leaf: the server sets it once per
//! worker thread; per-worker state elsewhere (the upstream pools, the shared limits'
//! batching slots) reads it to pick its own shard without a lock.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks this thread as proxy worker `index` (the server, once per worker thread).
pub fn set_current(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// The proxy worker running on this thread (0 on any other thread).
pub fn index() -> usize {
    current().unwrap_or(0)
}

/// The proxy worker running on this thread, if this thread is one.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_marked_threads_are_workers() {
        assert_eq!(super::current(), None);
        assert_eq!(super::index(), 0);
        std::thread::spawn(|| {
            super::set_current(3);
            assert_eq!((super::current(), super::index()), (Some(3), 3));
        })
        .join()
        .unwrap();
        assert_eq!(super::current(), None);
    }
}
