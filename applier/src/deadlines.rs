//! When the background workers (rollouts, `PR` objects) look at a key again: a set of keys per
//! instant, the earliest first.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

/// Keys to look at again, by when.
#[derive(Debug)]
pub struct Deadlines<K> {
    at: BTreeMap<Instant, BTreeSet<K>>,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            at: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Deadlines<K> {
    /// Looks at `key` again at `at`.
    pub fn insert(&mut self, at: Instant, key: K) {
        self.at.entry(at).or_default().insert(key);
    }

    /// The earliest deadline, if any (for [`sleep_until`]).
    pub fn next(&self) -> Option<Instant> {
        self.at.keys().next().copied()
    }

    /// Removes and returns the keys due at `now`.
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = K> + use<K> {
        let later = self
            .at
            .split_off(&(now + std::time::Duration::from_nanos(1)));
        std::mem::replace(&mut self.at, later)
            .into_values()
            .flatten()
    }
}

/// Sleeps until `at`; forever when there is no deadline.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_keys_are_taken_earliest_first_and_later_ones_stay() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.insert(now + Duration::from_secs(5), "later");
        d.insert(now, "now");
        d.insert(now - Duration::from_secs(1), "past");
        d.insert(now, "also-now");
        assert_eq!(d.next(), Some(now - Duration::from_secs(1)));
        let due: Vec<_> = d.take_due(now).collect();
        assert_eq!(due, ["past", "also-now", "now"]);
        assert_eq!(d.next(), Some(now + Duration::from_secs(5)));
        assert_eq!(d.take_due(now).count(), 0);
    }
}
