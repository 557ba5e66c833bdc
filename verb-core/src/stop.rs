//! Telling long-lived connections that the server stops, without a future per connection.
//!
//! A task can wait for [`Lifecycle::shutdown`](crate::Lifecycle::shutdown), but every such wait is a
//! future of its own that the task keeps for its whole life. Connections that wait on their own
//! terms (a WebSocket engine polls its socket and wakes on its own waker) register a
//! [`StopListener`] instead: one slot in a list per server, called once per stage.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use slab::Slab;

/// A stage of a server's stop, as [`StopListener`]s hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StopSignal {
    /// A graceful stop began: finish politely (a WebSocket says 1001 "going away").
    Graceful,
    /// The graceful stop's deadline passed: drop what is left now.
    Forced,
}

/// Hears a server's stop; see [`Lifecycle::register`](crate::Lifecycle::register).
///
/// `on_stop` runs outside any lock of Verb's: on the task that stops the server, or, for a listener
/// registered after a stop began, inside [`Lifecycle::register`](crate::Lifecycle::register). It
/// should only record the signal and wake whoever acts on it. A listener registering while the stop
/// moves on may hear [`Forced`](StopSignal::Forced) before [`Graceful`](StopSignal::Graceful);
/// treat each as "at least this far".
pub trait StopListener: Send + Sync {
    /// The server reached `signal`.
    fn on_stop(&self, signal: StopSignal);
}

/// Keeps a [`StopListener`] registered; dropping it unregisters.
#[must_use = "the listener is unregistered when this is dropped"]
pub struct StopRegistration {
    listeners: Arc<Listeners>,
    key: usize,
}

impl Drop for StopRegistration {
    fn drop(&mut self) {
        let mut state = self.listeners.lock();
        state.slots.try_remove(self.key);
    }
}

impl std::fmt::Debug for StopRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopRegistration")
            .field("key", &self.key)
            .finish()
    }
}

/// A server's registered listeners, and how far its stop has come.
#[derive(Default)]
pub(crate) struct Listeners {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    reached: Option<StopSignal>,
    slots: Slab<Weak<dyn StopListener>>,
}

impl Listeners {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and a stage, consistent after any panic: keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `listener`; one registered after a stop began hears the stage reached at once.
    pub(crate) fn register(self: &Arc<Self>, listener: Weak<dyn StopListener>) -> StopRegistration {
        let (key, reached) = {
            let mut state = self.lock();
            let key = state.slots.insert(listener.clone());
            (key, state.reached)
        };
        if let (Some(signal), Some(listener)) = (reached, listener.upgrade()) {
            listener.on_stop(signal);
        }
        StopRegistration {
            listeners: Arc::clone(self),
            key,
        }
    }

    /// Tells every listener that the stop reached `signal` (once per stage).
    pub(crate) fn notify(&self, signal: StopSignal) {
        let listeners: Vec<Weak<dyn StopListener>> = {
            let mut state = self.lock();
            if state.reached >= Some(signal) {
                return;
            }
            state.reached = Some(signal);
            state.slots.iter().map(|(_, l)| l.clone()).collect()
        };
        // Outside the lock: a listener may register or unregister others while it runs.
        for listener in listeners {
            if let Some(listener) = listener.upgrade() {
                listener.on_stop(signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counter {
        graceful: AtomicUsize,
        forced: AtomicUsize,
    }

    impl StopListener for Counter {
        fn on_stop(&self, signal: StopSignal) {
            match signal {
                StopSignal::Graceful => &self.graceful,
                StopSignal::Forced => &self.forced,
            }
            .fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counts(counter: &Counter) -> (usize, usize) {
        (
            counter.graceful.load(Ordering::SeqCst),
            counter.forced.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn each_stage_reaches_registered_listeners_once() {
        let listeners = Arc::new(Listeners::default());
        let counter = Arc::new(Counter::default());
        let weak: Weak<dyn StopListener> = Arc::downgrade(&counter) as _;
        let _registration = listeners.register(weak);
        listeners.notify(StopSignal::Graceful);
        listeners.notify(StopSignal::Graceful);
        assert_eq!(counts(&counter), (1, 0));
        listeners.notify(StopSignal::Forced);
        assert_eq!(counts(&counter), (1, 1));
    }

    #[test]
    fn late_listeners_hear_the_stage_reached_and_dropped_ones_nothing() {
        let listeners = Arc::new(Listeners::default());
        let gone = Arc::new(Counter::default());
        let registration = listeners.register(Arc::downgrade(&gone) as _);
        drop(registration);
        listeners.notify(StopSignal::Graceful);
        assert_eq!(counts(&gone), (0, 0));

        let late = Arc::new(Counter::default());
        let _registration = listeners.register(Arc::downgrade(&late) as _);
        assert_eq!(counts(&late), (1, 0));
        assert!(
            listeners.lock().slots.len() == 1,
            "the dropped one left its slot"
        );
    }
}
