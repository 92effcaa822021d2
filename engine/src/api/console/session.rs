//! Console sessions: a random id in a cookie, mapped in memory to the principal
//! whose token was pasted at login, with a CSRF token of its own and an expiry.
//!
//! Only the SHA-256 of a session id is kept (as only digests of tokens are), so
//! memory never holds a usable cookie. Sessions are bounded in number; past the
//! bound the one unused longest is dropped. A restart ends every session.

use super::super::principals::Caller;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a session lasts at most, from login.
pub const ABSOLUTE_MS: i64 = 12 * 3600 * 1000;
/// How long a session lasts without a request.
pub const IDLE_MS: i64 = 3600 * 1000;
/// Sessions kept at once.
const MAX_SESSIONS: usize = 4096;

/// One logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub caller: Caller,
    /// The principal's index, for its rate-limit bucket.
    pub index: usize,
    /// Every form of this session carries it.
    pub csrf: String,
    pub last_ms: i64,
    /// The end: the absolute limit, or the principal's token expiry if sooner.
    pub ends_ms: i64,
}

impl Session {
    fn live(&self, now_ms: i64) -> bool {
        now_ms < self.ends_ms && now_ms - self.last_ms < IDLE_MS
    }
}

/// Every session of one API.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes from the operating system, as hex.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex(&b)
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Constant-time equality of two strings of the same length.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Opens a session for `caller`; returns its id (the cookie's value).
    pub fn open(
        &self,
        caller: Caller,
        index: usize,
        token_expires_ms: Option<i64>,
        now_ms: i64,
    ) -> (String, Session) {
        let id = random_hex();
        let s = Session {
            caller,
            index,
            csrf: random_hex(),
            last_ms: now_ms,
            ends_ms: token_expires_ms.map_or(now_ms + ABSOLUTE_MS, |t| t.min(now_ms + ABSOLUTE_MS)),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.live(now_ms));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_ms).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&id), s.clone());
        (id, s)
    }

    /// The live session with this id (touched), or none; an expired one is dropped.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let k = key(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&k) {
            Some(s) if s.live(now_ms) => {
                s.last_ms = now_ms;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session with this id.
    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vigil_bundle::model::Role;

    fn caller() -> Caller {
        Caller {
            name: "alice".into(),
            role: Role::Operator,
        }
    }

    #[test]
    fn sessions_expire_idle_absolute_and_with_the_token() {
        let s = Sessions::default();
        let (id, sess) = s.open(caller(), 0, None, 1_000);
        assert_eq!(sess.csrf.len(), 64);
        assert_ne!(id, sess.csrf);
        assert!(s.get(&id, 2_000).is_some());
        assert!(s.get("nope", 2_000).is_none());
        // Idle too long.
        assert!(s.get(&id, 2_000 + IDLE_MS).is_none());
        assert_eq!(s.len(), 0, "an expired session is dropped");
        // Kept alive by use, but not past the absolute limit.
        let (id, _) = s.open(caller(), 0, None, 0);
        let mut t = 0;
        while t + IDLE_MS / 2 < ABSOLUTE_MS {
            t += IDLE_MS / 2;
            assert!(s.get(&id, t).is_some(), "at {t}");
        }
        assert!(s.get(&id, ABSOLUTE_MS).is_none());
        // The token's expiry ends it sooner.
        let (id, _) = s.open(caller(), 0, Some(5_000), 0);
        assert!(s.get(&id, 4_999).is_some());
        assert!(s.get(&id, 5_000).is_none());
        let (id, _) = s.open(caller(), 0, None, 0);
        s.close(&id);
        assert!(s.get(&id, 1).is_none());
    }

    #[test]
    fn ids_are_random_and_compared_in_constant_time() {
        assert_ne!(random_hex(), random_hex());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
