//! Sign-in throttling: slows down password guessing against the accounts on this server.
//!
//! It protects against online guessing: an attacker trying password after password for
//! one account from one address (or a few), and one address spraying common passwords
//! across many accounts. Callers ask [`SignInThrottle::check`] before a password is
//! checked, and report the outcome with [`SignInThrottle::failed`] (a wrong password or an
//! unknown account, counted alike so the throttle does not tell which accounts exist) or
//! [`SignInThrottle::succeeded`]. A refused attempt is not checked and not reported.
//!
//! # Policy
//!
//! The numbers are those of [`ThrottlePolicy::default`]:
//!
//! * Failures are counted per (account, address) pair and per address across all
//!   accounts. The two counts are independent; when both impose a wait, the longer applies.
//! * The first 5 failures of a pair, and the first 20 of an address, cost nothing.
//! * The Nth failure beyond the free count imposes a delay of 1 s × 2^(N−1), capped at
//!   15 min (1 s, 2 s, 4 s, … 512 s, then 900 s), measured from that failure.
//!   [`SignInThrottle::check`] refuses with [`Throttled`] while
//!   `now < last failure + delay`.
//! * A success clears its pair's count, not its address's.
//! * A pair or address is forgotten 1 h after its last failure. At most 100 000 entries
//!   (pairs plus addresses) are held; beyond that the entries with the oldest last failure
//!   are dropped first, which are always the forgotten ones when there are any.
//!
//! Addresses: an IPv4 address counts on its own; an IPv4-mapped IPv6 address counts as
//! that IPv4 address; any other IPv6 address counts with its whole /64, since an attacker
//! gets a /64 as cheaply as a single address. Accounts: names are compared
//! case-insensitively (lowercased character by character), on at most their first 64
//! bytes (cut on a character boundary).
//!
//! # No lockout of the account itself
//!
//! There is deliberately no per-account count across addresses: failures from one address
//! never delay the same account from another address. This trades a weaker defence against
//! guessing spread over many addresses for never letting an attacker lock the real user
//! out of their own server. What bounds the guessing rate of a distributed attacker is
//! the cost of each password check (Argon2id), not this throttle.
//!
//! # Limits
//!
//! State is held in memory only, so a restart forgets it. A flood of failures from more
//! addresses than [`ThrottlePolicy::max_tracked`] allows drops the oldest entries, which
//! can let a throttled address try again early; memory stays bounded either way. Users
//! behind the same address (a shared NAT, the same /64) share its address-wide count.
//!
//! Everything here is synchronous and takes the time as an argument, so it can be tested
//! with explicit instants; callers pass [`Instant::now`]. A time earlier than a recorded
//! failure counts as no time elapsed since it. Nothing here panics on any input.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest prefix of an account name, in bytes, that tells accounts apart.
const MAX_ACCOUNT_KEY_BYTES: usize = 64;

/// How many failures are allowed and how long a throttled address must wait.
#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    /// Failures of one account from one address that impose no delay.
    pub free_failures_per_pair: u32,
    /// Failures from one address, across all accounts, that impose no delay.
    pub free_failures_per_address: u32,
    /// The delay after the first failure beyond a free count; it doubles with each
    /// further failure.
    pub first_delay: Duration,
    /// The longest delay imposed, however many failures there were.
    pub max_delay: Duration,
    /// How long after its last failure a pair or address is forgotten. A value below
    /// [`max_delay`](Self::max_delay) is raised to it, so no entry is forgotten while its
    /// delay still runs.
    pub forget_after: Duration,
    /// The most entries (pairs plus addresses) held at once; beyond it the entries with
    /// the oldest last failure are dropped. Each failure needs two entries.
    pub max_tracked: usize,
}

impl Default for ThrottlePolicy {
    /// 5 free failures per pair, 20 per address; delays from 1 s doubling up to 15 min;
    /// forgotten after 1 h without failures; at most 100 000 entries.
    fn default() -> Self {
        Self {
            free_failures_per_pair: 5,
            free_failures_per_address: 20,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_tracked: 100_000,
        }
    }
}

impl ThrottlePolicy {
    /// The delay imposed after `failures` failures of which `free` cost nothing.
    fn delay(&self, failures: u32, free: u32) -> Duration {
        let beyond = failures.saturating_sub(free);
        if beyond == 0 {
            return Duration::ZERO;
        }
        2u32.checked_pow(beyond - 1)
            .and_then(|factor| self.first_delay.checked_mul(factor))
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

/// A sign-in refused because of too many recent failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until a sign-in from this address for this account is checked again.
    pub retry_after: Duration,
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds, rounded up so the caller never retries too early.
        let secs = self
            .retry_after
            .as_secs()
            .saturating_add(u64::from(self.retry_after.subsec_nanos() > 0));
        write!(f, "too many failed sign-ins; try again in {secs} s")
    }
}

impl std::error::Error for Throttled {}

/// Where failures come from: an IPv4 address, or the /64 prefix of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Origin {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Origin {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let octets = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&octets[..8]);
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

/// What a failure count belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// One account (its normalised name) from one origin.
    Pair(String, Origin),
    /// One origin, across all accounts.
    Address(Origin),
}

/// The name an account is counted under: lowercased, at most 64 bytes, cut on a
/// character boundary. Reads no more of `account` than it needs.
fn account_key(account: &str) -> String {
    let mut key = String::with_capacity(MAX_ACCOUNT_KEY_BYTES.min(account.len()));
    for c in account.chars() {
        for lower in c.to_lowercase() {
            if key.len() + lower.len_utf8() > MAX_ACCOUNT_KEY_BYTES {
                return key;
            }
            key.push(lower);
        }
    }
    key
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// Tells apart entries with the same `last_failure` in the age index.
    seq: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Every entry's key by (last failure, seq): oldest first.
    by_age: BTreeMap<(Instant, u64), Key>,
    next_seq: u64,
}

impl State {
    /// Drops the entries whose last failure was `forget_after` or more before `now`.
    fn forget_old(&mut self, now: Instant, forget_after: Duration) {
        let Some(cutoff) = now.checked_sub(forget_after) else {
            return;
        };
        while let Some(oldest) = self.by_age.first_entry() {
            if oldest.key().0 > cutoff {
                break;
            }
            let ((_, seq), key) = oldest.remove_entry();
            self.remove_if_seq(&key, seq);
        }
    }

    /// Drops the entries with the oldest last failure until at most `max` remain.
    fn shrink_to(&mut self, max: usize) {
        while self.entries.len() > max {
            match self.by_age.pop_first() {
                Some(((_, seq), key)) => self.remove_if_seq(&key, seq),
                // Only if the index lost track of entries, which nothing here does; the
                // bound on memory matters more than what is remembered.
                None => self.entries.clear(),
            }
        }
    }

    fn remove_if_seq(&mut self, key: &Key, seq: u64) {
        if self.entries.get(key).is_some_and(|entry| entry.seq == seq) {
            self.entries.remove(key);
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_age.remove(&(entry.last_failure, entry.seq));
        }
    }

    fn record_failure(&mut self, key: Key, now: Instant) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        match self.entries.get_mut(&key) {
            Some(entry) => {
                self.by_age.remove(&(entry.last_failure, entry.seq));
                entry.failures = entry.failures.saturating_add(1);
                entry.last_failure = entry.last_failure.max(now);
                entry.seq = seq;
                self.by_age.insert((entry.last_failure, seq), key);
            }
            None => {
                self.by_age.insert((now, seq), key.clone());
                let entry = Entry {
                    failures: 1,
                    last_failure: now,
                    seq,
                };
                self.entries.insert(key, entry);
            }
        }
    }

    /// How much longer `key` must wait at `now`, zero if not at all.
    fn wait(&self, key: &Key, free: u32, policy: &ThrottlePolicy, now: Instant) -> Duration {
        match self.entries.get(key) {
            Some(entry) => policy
                .delay(entry.failures, free)
                .saturating_sub(now.saturating_duration_since(entry.last_failure)),
            None => Duration::ZERO,
        }
    }
}

/// Counts failed sign-ins per (account, address) pair and per address, and says when a
/// sign-in must wait. Shared through `&self` by every request; see the [module
/// documentation](self) for the policy.
pub struct SignInThrottle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

impl fmt::Debug for SignInThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInThrottle")
            .field("policy", &self.policy)
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl SignInThrottle {
    /// A throttle that has seen no failures, applying `policy`.
    pub fn new(mut policy: ThrottlePolicy) -> Self {
        policy.forget_after = policy.forget_after.max(policy.max_delay);
        Self {
            policy,
            state: Mutex::new(State::default()),
        }
    }

    /// Before a password is checked: Err when this address, or this account from this
    /// address, must still wait. The error holds the longer of the two waits.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Throttled> {
        let origin = Origin::of(address);
        let pair = Key::Pair(account_key(account), origin);
        let mut state = self.lock();
        state.forget_old(now, self.policy.forget_after);
        let wait = state
            .wait(&pair, self.policy.free_failures_per_pair, &self.policy, now)
            .max(state.wait(
                &Key::Address(origin),
                self.policy.free_failures_per_address,
                &self.policy,
                now,
            ));
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Throttled { retry_after: wait })
        }
    }

    /// A wrong password (or unknown account) from `address` for `account`.
    pub fn failed(&self, account: &str, address: IpAddr, now: Instant) {
        let origin = Origin::of(address);
        let pair = Key::Pair(account_key(account), origin);
        let mut state = self.lock();
        state.forget_old(now, self.policy.forget_after);
        state.record_failure(pair, now);
        state.record_failure(Key::Address(origin), now);
        state.shrink_to(self.policy.max_tracked);
    }

    /// A successful sign-in: clears the pair's failures (not the address-wide count).
    pub fn succeeded(&self, account: &str, address: IpAddr, now: Instant) {
        let pair = Key::Pair(account_key(account), Origin::of(address));
        let mut state = self.lock();
        state.forget_old(now, self.policy.forget_after);
        state.remove(&pair);
    }

    /// How many entries (pairs plus addresses) are held, for tests and metrics.
    pub fn tracked(&self) -> usize {
        self.lock().entries.len()
    }

    /// The state, also after a panic elsewhere while it was held: every change here
    /// leaves it usable, so a poisoned lock is no reason to stop throttling.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn throttle() -> SignInThrottle {
        SignInThrottle::new(ThrottlePolicy::default())
    }

    /// The wait `check` reports, zero when it passes.
    fn wait(t: &SignInThrottle, account: &str, address: IpAddr, now: Instant) -> Duration {
        match t.check(account, address, now) {
            Ok(()) => Duration::ZERO,
            Err(Throttled { retry_after }) => {
                assert!(!retry_after.is_zero(), "refused with no wait");
                retry_after
            }
        }
    }

    #[test]
    fn default_policy_has_the_documented_numbers() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.free_failures_per_pair, 5);
        assert_eq!(p.free_failures_per_address, 20);
        assert_eq!(p.first_delay, secs(1));
        assert_eq!(p.max_delay, secs(900));
        assert_eq!(p.forget_after, secs(3600));
        assert_eq!(p.max_tracked, 100_000);
    }

    #[test]
    fn free_failures_pass() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(t.check("owner", a, t0), Ok(()));
        for _ in 0..5 {
            t.failed("owner", a, t0);
            assert_eq!(t.check("owner", a, t0), Ok(()));
        }
        t.failed("owner", a, t0);
        assert_eq!(
            t.check("owner", a, t0),
            Err(Throttled {
                retry_after: secs(1)
            })
        );
    }

    #[test]
    fn delays_double_from_the_sixth_failure_up_to_fifteen_minutes() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let mut now = Instant::now();
        for _ in 0..5 {
            t.failed("owner", a, now);
        }
        let mut delays = Vec::new();
        for _ in 0..14 {
            t.failed("owner", a, now);
            let delay = wait(&t, "owner", a, now);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]
        );
        // However many failures there are, the delay stays capped and nothing overflows.
        for _ in 0..10_000 {
            t.failed("owner", a, now);
        }
        assert_eq!(wait(&t, "owner", a, now), secs(900));
    }

    #[test]
    fn waiting_out_the_delay_allows_another_try() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        for _ in 0..7 {
            t.failed("owner", a, t0);
        }
        // Seventh failure: 2 s, measured from the last failure.
        assert_eq!(wait(&t, "owner", a, t0), secs(2));
        let almost = t0 + secs(2) - Duration::from_nanos(1);
        assert_eq!(wait(&t, "owner", a, almost), Duration::from_nanos(1));
        assert_eq!(t.check("owner", a, t0 + secs(2)), Ok(()));
        // The next failure then doubles the delay, from its own time.
        let t1 = t0 + secs(5);
        t.failed("owner", a, t1);
        assert_eq!(wait(&t, "owner", a, t1 + secs(1)), secs(3));
        assert_eq!(t.check("owner", a, t1 + secs(4)), Ok(()));
    }

    #[test]
    fn guessing_from_one_address_never_throttles_the_account_from_another() {
        let t = throttle();
        let attacker = ip("192.0.2.1");
        let user = ip("198.51.100.7");
        let mut now = Instant::now();
        // An attacker who waits out every delay, for 1 000 wrong passwords.
        for _ in 0..1_000 {
            now += wait(&t, "owner", attacker, now);
            t.failed("owner", attacker, now);
        }
        assert_eq!(t.check("owner", user, now), Ok(()));
        assert_eq!(wait(&t, "owner", attacker, now), secs(900));
        // Also when the attacker's guesses land all at once.
        let t2 = throttle();
        for _ in 0..1_000 {
            t2.failed("owner", attacker, now);
        }
        assert_eq!(t2.check("owner", user, now), Ok(()));
        assert_eq!(t2.check("Owner", ip("2001:db8::7"), now), Ok(()));
        assert!(t2.check("owner", attacker, now).is_err());
    }

    #[test]
    fn many_accounts_from_one_address_throttle_that_address() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for i in 0..20 {
            t.failed(&format!("user{i}"), a, now);
        }
        assert_eq!(t.check("user21", a, now), Ok(()));
        t.failed("user20", a, now);
        // 21 failures across 21 accounts: the address waits, for any account.
        assert_eq!(
            t.check("user21", a, now),
            Err(Throttled {
                retry_after: secs(1)
            })
        );
        assert!(t.check("user0", a, now).is_err());
        // Other addresses do not.
        assert_eq!(t.check("user21", ip("192.0.2.2"), now), Ok(()));
        assert_eq!(t.check("user0", ip("192.0.2.2"), now), Ok(()));
    }

    #[test]
    fn the_stricter_of_pair_and_address_applies() {
        let policy = ThrottlePolicy {
            free_failures_per_pair: 0,
            free_failures_per_address: 2,
            ..ThrottlePolicy::default()
        };
        let t = SignInThrottle::new(policy);
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..3 {
            t.failed("owner", a, now);
        }
        // Pair: 3 beyond free, 4 s; address: 1 beyond free, 1 s.
        assert_eq!(wait(&t, "owner", a, now), secs(4));
        assert_eq!(wait(&t, "guest", a, now), secs(1));
        for _ in 0..3 {
            t.failed("guest", a, now);
        }
        // Address now 4 beyond free: 8 s, longer than either pair's wait.
        assert_eq!(wait(&t, "owner", a, now), secs(8));
    }

    #[test]
    fn success_clears_the_pair_but_not_the_address() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..6 {
            t.failed("owner", a, now);
        }
        assert!(t.check("owner", a, now).is_err());
        t.succeeded("owner", a, now);
        assert_eq!(t.check("owner", a, now), Ok(()));
        // The pair counts from zero again: five more failures are free.
        for _ in 0..5 {
            t.failed("owner", a, now);
        }
        assert_eq!(t.check("owner", a, now), Ok(()));
        // The address kept all eleven failures: nine more reach its free count of 20,
        // and the success on the pair did not reset that.
        t.succeeded("owner", a, now);
        for i in 0..9 {
            t.failed(&format!("user{i}"), a, now);
        }
        assert_eq!(t.check("owner", a, now), Ok(()));
        t.failed("user9", a, now);
        assert_eq!(
            t.check("owner", a, now),
            Err(Throttled {
                retry_after: secs(1)
            })
        );
    }

    #[test]
    fn success_from_another_address_does_not_clear_the_pair() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..6 {
            t.failed("owner", a, now);
        }
        t.succeeded("owner", ip("198.51.100.7"), now);
        assert!(t.check("owner", a, now).is_err());
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_count() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..6u16 {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0xffff, i, 1);
            t.failed("owner", IpAddr::V6(address), now);
        }
        assert!(t.check("owner", ip("2001:db8:1:2::9"), now).is_err());
        assert!(
            t.check("owner", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), now)
                .is_err()
        );
        assert_eq!(t.check("owner", ip("2001:db8:1:3::1"), now), Ok(()));
        assert_eq!(t.check("owner", ip("2001:db8:2:2::1"), now), Ok(()));
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn ipv4_counts_by_full_address_and_mapped_ipv6_as_ipv4() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..6 {
            t.failed("owner", ip("::ffff:192.0.2.1"), now);
        }
        assert!(t.check("owner", ip("192.0.2.1"), now).is_err());
        assert_eq!(t.check("owner", ip("192.0.2.2"), now), Ok(()));
        // An IPv6 address whose low bits spell the IPv4 address is a different origin.
        assert_eq!(t.check("owner", ip("::c000:201"), now), Ok(()));
        assert_eq!(t.check("owner", ip("64:ff9b::c000:201"), now), Ok(()));
    }

    #[test]
    fn entries_are_forgotten_an_hour_after_the_last_failure() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        for _ in 0..5 {
            t.failed("owner", a, t0);
        }
        // Within the hour the count is kept: the sixth failure is throttled.
        let t1 = t0 + secs(3599);
        t.failed("owner", a, t1);
        assert!(t.check("owner", a, t1).is_err());
        assert_eq!(t.tracked(), 2);
        // An hour after the last failure both entries are gone and the count restarts.
        let t2 = t1 + secs(3600);
        assert_eq!(t.check("owner", a, t2), Ok(()));
        assert_eq!(t.tracked(), 0);
        t.failed("owner", a, t2);
        assert_eq!(t.check("owner", a, t2), Ok(()));
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn forget_after_is_never_shorter_than_the_longest_delay() {
        let policy = ThrottlePolicy {
            forget_after: secs(60),
            ..ThrottlePolicy::default()
        };
        let t = SignInThrottle::new(policy);
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..40 {
            t.failed("owner", a, now);
        }
        assert_eq!(wait(&t, "owner", a, now + secs(61)), secs(900 - 61));
        assert_eq!(t.check("owner", a, now + secs(900)), Ok(()));
    }

    #[test]
    fn tracked_stays_within_max_under_many_addresses() {
        let policy = ThrottlePolicy {
            max_tracked: 1_000,
            ..ThrottlePolicy::default()
        };
        let t = SignInThrottle::new(policy);
        let now = Instant::now();
        let mut most = 0;
        for i in 0..100_000u32 {
            t.failed("owner", IpAddr::V4(Ipv4Addr::from(i)), now);
            most = most.max(t.tracked());
        }
        assert!(most <= 1_000, "held {most} entries");
        assert_eq!(most, 1_000);
    }

    #[test]
    fn when_full_the_oldest_failures_are_dropped_first() {
        let policy = ThrottlePolicy {
            free_failures_per_pair: 0,
            max_tracked: 4,
            ..ThrottlePolicy::default()
        };
        let t = SignInThrottle::new(policy);
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        let t0 = Instant::now();
        t.failed("a", a, t0);
        t.failed("b", b, t0 + secs(1));
        t.failed("a", a, t0 + secs(2)); // a is now newer than b
        t.failed("c", c, t0 + secs(3));
        assert_eq!(t.tracked(), 4);
        let now = t0 + secs(3);
        assert_eq!(t.check("b", b, now), Ok(()), "b was the oldest");
        assert!(t.check("a", a, now).is_err());
        assert!(t.check("c", c, now).is_err());
    }

    #[test]
    fn forgotten_entries_go_before_remembered_ones() {
        let policy = ThrottlePolicy {
            free_failures_per_pair: 0,
            max_tracked: 4,
            ..ThrottlePolicy::default()
        };
        let t = SignInThrottle::new(policy);
        let t0 = Instant::now();
        t.failed("old", ip("192.0.2.1"), t0);
        let t1 = t0 + secs(3000);
        t.failed("kept", ip("192.0.2.2"), t1);
        // An hour after the first failure, a third address fits without dropping "kept".
        let t2 = t0 + secs(3600);
        t.failed("new", ip("192.0.2.3"), t2);
        assert_eq!(t.tracked(), 4);
        assert_eq!(t.check("old", ip("192.0.2.1"), t2), Ok(()));
        assert!(t.check("new", ip("192.0.2.3"), t2).is_err());
        // "kept" still has its first failure: a second one makes two, a 2 s delay.
        t.failed("kept", ip("192.0.2.2"), t2);
        assert_eq!(t.tracked(), 4);
        assert_eq!(wait(&t, "kept", ip("192.0.2.2"), t2), secs(2));
    }

    #[test]
    fn account_names_are_case_insensitive() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for name in ["Owner", "OWNER", "owner", "oWnEr", "OwNeR", "OWNer"] {
            t.failed(name, a, now);
        }
        assert!(t.check("owner", a, now).is_err());
        assert!(t.check("OWNER", a, now).is_err());
        assert_eq!(t.check("owner2", a, now), Ok(()));
        let t = throttle();
        for _ in 0..6 {
            t.failed("ÉMILE", a, now);
        }
        assert!(t.check("émile", a, now).is_err());
    }

    #[test]
    fn long_account_names_count_on_their_first_64_bytes() {
        let t = throttle();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        let base = "x".repeat(64);
        for i in 0..6 {
            t.failed(&format!("{base}{i}"), a, now);
        }
        assert!(t.check(&format!("{base}-anything"), a, now).is_err());
        assert_eq!(t.check(&"x".repeat(63), a, now), Ok(()));
        // Multi-byte characters are cut on a boundary; "é" is two bytes, so 32 fit.
        let t = throttle();
        for _ in 0..6 {
            t.failed(&"é".repeat(100), a, now);
        }
        assert!(t.check(&"É".repeat(32), a, now).is_err());
        assert_eq!(t.check(&"é".repeat(31), a, now), Ok(()));
        assert_eq!(account_key(&"€".repeat(30)).len(), 63);
        assert_eq!(account_key("İ").chars().count(), 2);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let zero = ThrottlePolicy {
            free_failures_per_pair: 0,
            free_failures_per_address: 0,
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            forget_after: Duration::ZERO,
            max_tracked: 0,
        };
        let huge = ThrottlePolicy {
            free_failures_per_pair: u32::MAX,
            free_failures_per_address: u32::MAX,
            first_delay: Duration::MAX,
            max_delay: Duration::MAX,
            forget_after: Duration::MAX,
            max_tracked: usize::MAX,
        };
        let late = Instant::now() + secs(10_000);
        for policy in [zero, huge, ThrottlePolicy::default()] {
            let t = SignInThrottle::new(policy);
            for address in [ip("0.0.0.0"), ip("::"), ip("::1"), ip("ffff::ffff")] {
                for account in ["", "\u{0}", "ﬃ", &"\u{10FFFF}".repeat(1_000)] {
                    for _ in 0..30 {
                        t.failed(account, address, late);
                    }
                    // Times before the recorded failures count as no time elapsed.
                    let _ = t.check(account, address, late - secs(5_000));
                    let _ = t.check(
                        account,
                        address,
                        late + Duration::from_secs(u32::MAX.into()),
                    );
                    t.succeeded(account, address, late - secs(1));
                }
            }
        }
        let t = throttle();
        for _ in 0..6 {
            t.failed("owner", ip("192.0.2.1"), late);
        }
        assert_eq!(
            wait(&t, "owner", ip("192.0.2.1"), late - secs(100)),
            secs(1)
        );
        // A failure reported with an earlier time still counts, from the latest failure.
        t.failed("owner", ip("192.0.2.1"), late - secs(100));
        assert_eq!(wait(&t, "owner", ip("192.0.2.1"), late), secs(2));
        // With room for nothing, nothing is remembered (and nothing is throttled).
        let t = SignInThrottle::new(ThrottlePolicy {
            max_tracked: 0,
            free_failures_per_pair: 0,
            ..ThrottlePolicy::default()
        });
        t.failed("owner", ip("192.0.2.1"), late);
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.check("owner", ip("192.0.2.1"), late), Ok(()));
    }

    #[test]
    fn throttled_reads_as_whole_seconds_rounded_up() {
        let t = Throttled {
            retry_after: Duration::from_millis(1_500),
        };
        assert_eq!(t.to_string(), "too many failed sign-ins; try again in 2 s");
        let t = Throttled {
            retry_after: secs(900),
        };
        assert_eq!(
            t.to_string(),
            "too many failed sign-ins; try again in 900 s"
        );
        let t = Throttled {
            retry_after: Duration::MAX,
        };
        assert!(t.to_string().contains(&u64::MAX.to_string()));
        let _: &dyn std::error::Error = &t;
    }

    #[test]
    fn shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SignInThrottle>();
        let t = Arc::new(throttle());
        let a = ip("192.0.2.1");
        let now = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        t.failed(&format!("user{n}-{i}"), a, now);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        // 400 pairs and one address, which saw all 400 failures: 380 beyond free, capped.
        assert_eq!(t.tracked(), 401);
        assert_eq!(wait(&t, "someone", a, now), secs(900));
    }

    #[test]
    fn a_poisoned_lock_keeps_working() {
        let t = Arc::new(throttle());
        let t2 = Arc::clone(&t);
        let _ = std::thread::spawn(move || {
            let _guard = t2.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(t.state.is_poisoned());
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..6 {
            t.failed("owner", a, now);
        }
        assert!(t.check("owner", a, now).is_err());
    }
}
