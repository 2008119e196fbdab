//! A gate every write to the database passes, so that a backup
//! (`crate::backup`) can hold writes back for a moment and copy every tree
//! as of one instant: sled has no snapshot across trees.
//!
//! Writers enter the gate for the length of one store method (never across
//! an `.await`); [`Gate::pause`] waits for those inside to leave and keeps
//! new ones out until it is dropped. A thread already inside (a store
//! method that calls another) goes in again without waiting, so nesting
//! cannot deadlock against a pause.

use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    inside: usize,
    paused: bool,
}

thread_local! {
    /// How many times this thread is inside a gate.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A writer inside the gate.
pub struct Entered<'a>(&'a Gate);

/// Writes held back, until dropped.
pub struct Paused<'a>(&'a Gate);

impl Gate {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(s).unwrap_or_else(|p| p.into_inner())
    }

    /// Goes in, waiting while a pause holds writes back.
    pub fn enter(&self) -> Entered<'_> {
        let nested = DEPTH.with(|d| d.get()) > 0;
        let mut s = self.state();
        while s.paused && !nested {
            s = self.wait(s);
        }
        s.inside += 1;
        DEPTH.with(|d| d.set(d.get() + 1));
        Entered(self)
    }

    /// Holds new writes back and waits until none is inside. One pause at
    /// a time: a second waits for the first to end. Must not be called by
    /// a thread that is inside.
    pub fn pause(&self) -> Paused<'_> {
        let mut s = self.state();
        while s.paused {
            s = self.wait(s);
        }
        s.paused = true;
        while s.inside > 0 {
            s = self.wait(s);
        }
        Paused(self)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        let mut s = self.0.state();
        s.inside -= 1;
        if s.inside == 0 {
            self.0.changed.notify_all();
        }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.state().paused = false;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_pause_waits_for_writers_inside_and_holds_new_ones_back() {
        let gate = Arc::new(Gate::default());
        let inside = gate.enter();
        let paused = Arc::new(AtomicBool::new(false));
        let (g, p) = (gate.clone(), paused.clone());
        let pauser = std::thread::spawn(move || {
            let _pause = g.pause();
            p.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            p.store(false, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !paused.load(Ordering::SeqCst),
            "paused with a writer inside"
        );
        // Nested entry of a thread already inside does not wait.
        drop(gate.enter());
        drop(inside);
        while !paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let g = gate.clone();
        let p = paused.clone();
        let writer = std::thread::spawn(move || {
            let _in = g.enter();
            assert!(!p.load(Ordering::SeqCst), "a writer went in during a pause");
        });
        pauser.join().unwrap();
        writer.join().unwrap();
    }
}
