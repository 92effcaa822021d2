//! Rate limits, charged after authentication: a token bucket per principal (accepted
//! token) and, in a separate and stricter set, one per client network for requests
//! without a valid token. A flood that cannot authenticate only ever drains its own
//! buckets, never an authenticated client's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client networks with a bucket of their own; past this, unknown networks share one.
pub(crate) const MAX_NETWORKS: usize = 16_384;

/// At capacity, stale buckets are looked for at most this often, so a flood of new
/// addresses does not make every request scan the map.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst(rate),
            at: now,
        }
    }

    fn refilled(&self, rate: f64, now: Instant) -> f64 {
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst(rate))
    }

    fn take(&mut self, rate: f64, now: Instant) -> bool {
        self.tokens = self.refilled(rate, now);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn burst(rate: f64) -> f64 {
    rate * 2.0
}

#[derive(Debug)]
struct Networks {
    map: HashMap<IpAddr, Bucket>,
    /// Shared by the networks that found the map full.
    overflow: Bucket,
    swept: Instant,
}

/// Who a request is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    /// The index of the accepted token.
    Token(usize),
    /// No valid token: the client's network.
    Anonymous(IpAddr),
}

#[derive(Debug)]
pub(crate) struct Limiter {
    token_rate: f64,
    anonymous_rate: f64,
    tokens: Mutex<Vec<Bucket>>,
    networks: Mutex<Networks>,
    capacity: usize,
}

impl Limiter {
    pub(crate) fn new(
        tokens: usize,
        token_rate: u32,
        anonymous_rate: u32,
        capacity: usize,
    ) -> Limiter {
        let now = Instant::now();
        let token_rate = f64::from(token_rate.max(1));
        let anonymous_rate = f64::from(anonymous_rate.max(1));
        Limiter {
            token_rate,
            anonymous_rate,
            tokens: Mutex::new(vec![Bucket::full(token_rate, now); tokens]),
            networks: Mutex::new(Networks {
                map: HashMap::new(),
                overflow: Bucket::full(anonymous_rate, now),
                swept: now,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Takes one request from `who`'s bucket; false when it is empty.
    pub(crate) fn allow(&self, who: Principal) -> bool {
        self.allow_at(who, Instant::now())
    }

    fn allow_at(&self, who: Principal, now: Instant) -> bool {
        match who {
            Principal::Token(i) => {
                let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                t.get_mut(i).is_some_and(|b| b.take(self.token_rate, now))
            }
            Principal::Anonymous(ip) => self.allow_network(network(ip), now),
        }
    }

    fn allow_network(&self, key: IpAddr, now: Instant) -> bool {
        let rate = self.anonymous_rate;
        let mut n = self.networks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = n.map.get_mut(&key) {
            return b.take(rate, now);
        }
        if n.map.len() >= self.capacity && now.saturating_duration_since(n.swept) >= SWEEP_EVERY {
            // A bucket that has filled up again is the same as no bucket.
            n.map.retain(|_, b| b.refilled(rate, now) < burst(rate));
            n.swept = now;
        }
        if n.map.len() < self.capacity {
            let mut b = Bucket::full(rate, now);
            let ok = b.take(rate, now);
            n.map.insert(key, b);
            ok
        } else {
            n.overflow.take(rate, now)
        }
    }

    #[cfg(test)]
    fn networks(&self) -> usize {
        self.networks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

/// The key of a client's bucket: its IPv4 address, or its IPv6 /64, since one host
/// usually holds a whole /64 and could otherwise take a fresh bucket per request.
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn anonymous_flood_leaves_tokens_alone() {
        let l = Limiter::new(2, 5, 1, 100);
        let t = Instant::now();
        let flooder = v4(0x7f00_0001);
        let passed = (0..1000)
            .filter(|_| l.allow_at(Principal::Anonymous(flooder), t))
            .count();
        assert_eq!(passed, 2, "burst is twice the rate");
        // Both tokens still have their whole burst, whoever sends them.
        for i in 0..2 {
            let ok = (0..10)
                .filter(|_| l.allow_at(Principal::Token(i), t))
                .count();
            assert_eq!(ok, 10);
            assert!(!l.allow_at(Principal::Token(i), t));
        }
        // And they refill at their rate.
        assert!(l.allow_at(Principal::Token(0), t + Duration::from_millis(250)));
        assert!(!l.allow_at(Principal::Token(7), t), "no such token");
    }

    #[test]
    fn network_map_stays_bounded_and_forgets_stale_buckets() {
        let cap = 1000;
        let l = Limiter::new(1, 100, 10, cap);
        let t = Instant::now();
        for n in 0..100_000u32 {
            l.allow_at(Principal::Anonymous(v4(n)), t);
        }
        assert_eq!(l.networks(), cap);
        // Unknown networks share the overflow bucket meanwhile, which the flood drained.
        let fresh = (0..100u32)
            .filter(|n| l.allow_at(Principal::Anonymous(v4(1_000_000 + n)), t))
            .count();
        assert_eq!(fresh, 0);
        // Once the buckets have filled up again they are dropped, and newcomers get their own.
        let later = t + Duration::from_secs(3);
        assert!(l.allow_at(Principal::Anonymous(v4(2_000_000)), later));
        assert_eq!(l.networks(), 1);
    }

    #[test]
    fn a_known_network_keeps_its_bucket_when_the_map_is_full() {
        let l = Limiter::new(1, 100, 1, 10);
        let t = Instant::now();
        let me = v4(1);
        assert!(l.allow_at(Principal::Anonymous(me), t));
        assert!(l.allow_at(Principal::Anonymous(me), t));
        for n in 100..200 {
            l.allow_at(Principal::Anonymous(v4(n)), t);
        }
        assert!(
            !l.allow_at(Principal::Anonymous(me), t),
            "still empty, not reset"
        );
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network(IpAddr::V6(a)), network(IpAddr::V6(b)));
        assert_ne!(network(IpAddr::V6(a)), network(IpAddr::V6(c)));
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(network(IpAddr::V6(mapped)), v4(0x0a01_0203));
        let l = Limiter::new(0, 1, 1, 100);
        let t = Instant::now();
        let rotating = (0..50u16)
            .filter(|i| {
                let ip = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, *i, 0, 0, 1);
                l.allow_at(Principal::Anonymous(IpAddr::V6(ip)), t)
            })
            .count();
        assert_eq!(rotating, 2, "rotating within a /64 buys nothing");
    }
}
