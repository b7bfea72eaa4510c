//! Fan-out of events to the sockets of this instance. Each subscriber has its own bounded
//! queue, filled with `try_send`: publishing never waits, so a subscriber that does not keep
//! up is cut off (its socket then closes with 1008) instead of slowing the publisher or
//! anyone else. Events are routed by user, so a socket is woken only for what it receives.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::UserId;

/// One audit entry, ready to send: the whole `{"type": "event", ...}` message is rendered
/// once and shared by every recipient.
#[derive(Debug)]
pub struct Event {
    pub seq: i64,
    pub actor_id: Option<String>,
    /// The target's id when the target is a user.
    pub target_user: Option<String>,
    /// The message for the actor.
    pub message: Utf8Bytes,
    /// The message for audit readers, when it differs (the entry has personal data).
    pub audit_message: Option<Utf8Bytes>,
    /// The message for the target user who is not the actor, when it differs (someone else
    /// acted: see `EntryView::for_target`).
    pub target_message: Option<Utf8Bytes>,
}

impl Event {
    /// What `user` receives: audit readers see more of some entries, and a target user who
    /// did not act sees less of what someone else did to their account.
    pub fn message_for(&self, user: &str, audit_reader: bool) -> &Utf8Bytes {
        let differing = if audit_reader {
            &self.audit_message
        } else if self.actor_id.as_deref() == Some(user) {
            &None
        } else {
            &self.target_message
        };
        differing.as_ref().unwrap_or(&self.message)
    }

    /// Whether the entry is about `user`: done by them, or to their account.
    pub fn concerns(&self, user: &str) -> bool {
        self.actor_id.as_deref() == Some(user) || self.target_user.as_deref() == Some(user)
    }
}

/// The subscribers of this instance.
#[derive(Debug)]
pub struct Bus {
    capacity: usize,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    by_user: HashMap<String, Vec<u64>>,
    /// Subscribers of the `audit` stream: they receive every event.
    audit: HashSet<u64>,
}

#[derive(Debug)]
struct Subscriber {
    user: String,
    queue: mpsc::Sender<Arc<Event>>,
    /// Fired when the subscriber is cut off for falling behind.
    cut_off: Option<oneshot::Sender<()>>,
}

/// Why a subscriber left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// It fell `capacity` events behind.
    TooSlow,
    /// Its socket ended.
    Gone,
}

/// A socket's place on the bus; leaving is dropping it.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    bus: Arc<Bus>,
    /// Events for this subscriber, in publication order.
    pub events: mpsc::Receiver<Arc<Event>>,
    /// Resolves when the bus cut this subscriber off because its queue was full.
    pub cut_off: oneshot::Receiver<()>,
}

impl Subscription {
    /// From now on, receive every event (the `audit` stream), not only the user's own.
    pub fn add_audit_stream(&self) {
        self.bus.lock().audit.insert(self.id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = self.bus.lock();
        registry.remove(self.id, Removal::Gone);
    }
}

impl Bus {
    /// A bus whose subscribers may each fall `capacity` events behind.
    pub fn new(capacity: usize) -> Bus {
        Bus {
            capacity: capacity.max(1),
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every critical section leaves the registry consistent, so a poisoned lock (a panic
        // elsewhere while holding it) is safe to keep using.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes a socket of `user` to the events about that user.
    pub fn subscribe(self: &Arc<Self>, user: UserId) -> Subscription {
        let (queue, events) = mpsc::channel(self.capacity);
        let (cut_off_tx, cut_off) = oneshot::channel();
        let user = user.to_string();
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.by_user.entry(user.clone()).or_default().push(id);
        registry.subscribers.insert(
            id,
            Subscriber {
                user,
                queue,
                cut_off: Some(cut_off_tx),
            },
        );
        registry.count_changed();
        drop(registry);
        Subscription {
            id,
            bus: self.clone(),
            events,
            cut_off,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().subscribers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// Hands `event` to every subscriber it is for, without waiting for any of them.
    pub fn publish(&self, event: Arc<Event>) {
        let mut registry = self.lock();
        let mut recipients: Vec<u64> = registry.audit.iter().copied().collect();
        for user in [&event.actor_id, &event.target_user].into_iter().flatten() {
            if let Some(ids) = registry.by_user.get(user) {
                recipients.extend(ids);
            }
        }
        recipients.sort_unstable();
        recipients.dedup();
        for id in recipients {
            let Some(subscriber) = registry.subscribers.get(&id) else {
                continue;
            };
            match subscriber.queue.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    registry.remove(id, Removal::TooSlow);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    registry.remove(id, Removal::Gone);
                }
            }
        }
    }
}

impl Registry {
    fn remove(&mut self, id: u64, why: Removal) {
        let Some(mut subscriber) = self.subscribers.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&subscriber.user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_user.remove(&subscriber.user);
            }
        }
        self.audit.remove(&id);
        if why == Removal::TooSlow {
            metrics::counter!(crate::telemetry::metrics::WEBSOCKET_DROPPED, "reason" => "slow_client")
                .increment(1);
            if let Some(cut_off) = subscriber.cut_off.take() {
                let _ = cut_off.send(());
            }
        }
        self.count_changed();
    }

    fn count_changed(&self) {
        metrics::gauge!(crate::telemetry::metrics::WEBSOCKET_SUBSCRIBERS)
            .set(self.subscribers.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, actor: Option<&str>, target_user: Option<&str>) -> Arc<Event> {
        Arc::new(Event {
            seq,
            actor_id: actor.map(str::to_string),
            target_user: target_user.map(str::to_string),
            message: Utf8Bytes::from(format!("{seq}")),
            audit_message: None,
            target_message: None,
        })
    }

    fn user() -> UserId {
        UserId::new()
    }

    fn drain(sub: &mut Subscription) -> Vec<i64> {
        let mut seen = Vec::new();
        while let Ok(e) = sub.events.try_recv() {
            seen.push(e.seq);
        }
        seen
    }

    #[test]
    fn users_get_what_they_did_or_underwent_and_audit_readers_get_everything() {
        let bus = Arc::new(Bus::new(16));
        let (alice, bob) = (user(), user());
        let (a, b) = (alice.to_string(), bob.to_string());
        let mut alice_sub = bus.subscribe(alice);
        let mut bob_sub = bus.subscribe(bob);
        let mut auditor = bus.subscribe(user());
        auditor.add_audit_stream();

        bus.publish(event(1, Some(&a), None));
        bus.publish(event(2, None, Some(&b)));
        bus.publish(event(3, Some(&a), Some(&a)));
        bus.publish(event(4, None, None));

        assert_eq!(
            drain(&mut alice_sub),
            [1, 3],
            "once each, even when actor and target"
        );
        assert_eq!(drain(&mut bob_sub), [2]);
        assert_eq!(drain(&mut auditor), [1, 2, 3, 4]);
    }

    #[test]
    fn each_recipient_gets_the_message_of_its_part_in_the_entry() {
        let event = Event {
            seq: 1,
            actor_id: Some("admin".into()),
            target_user: Some("user".into()),
            message: Utf8Bytes::from("actor"),
            audit_message: Some(Utf8Bytes::from("audit")),
            target_message: Some(Utf8Bytes::from("target")),
        };
        assert_eq!(event.message_for("admin", false).as_str(), "actor");
        assert_eq!(event.message_for("user", false).as_str(), "target");
        assert_eq!(event.message_for("user", true).as_str(), "audit");
        assert_eq!(event.message_for("admin", true).as_str(), "audit");
        let plain = Event {
            audit_message: None,
            target_message: None,
            ..event
        };
        assert_eq!(plain.message_for("user", false).as_str(), "actor");
        assert_eq!(plain.message_for("user", true).as_str(), "actor");
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_cut_off_and_the_others_keep_receiving() {
        let bus = Arc::new(Bus::new(2));
        let mut slow = bus.subscribe(user());
        slow.add_audit_stream();
        let mut fast = bus.subscribe(user());
        fast.add_audit_stream();

        let mut fast_seen = Vec::new();
        for seq in 1..=5 {
            bus.publish(event(seq, None, None));
            fast_seen.extend(drain(&mut fast));
        }

        assert_eq!(fast_seen, [1, 2, 3, 4, 5]);
        assert!(slow.cut_off.try_recv().is_ok(), "the slow one is told");
        assert_eq!(
            drain(&mut slow),
            [1, 2],
            "and gets nothing after its queue filled"
        );
        assert_eq!(bus.len(), 1);
    }

    #[test]
    fn dropping_a_subscription_leaves_the_bus() {
        let bus = Arc::new(Bus::new(2));
        let u = user();
        let sub = bus.subscribe(u);
        sub.add_audit_stream();
        assert!(!bus.is_empty());
        drop(sub);
        assert!(bus.is_empty());
        // Publishing to nobody is fine.
        bus.publish(event(1, Some(&u.to_string()), None));
    }
}
