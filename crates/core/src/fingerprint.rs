//! FNV-1a 64: the hash behind alert fingerprints (it is Alertmanager's), content
//! keys and per-job jitter. Small, stable across releases and platforms, and not
//! for anything an attacker may choose to collide (approvals use SHA-256).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A streaming FNV-1a 64 hasher.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;

    pub const fn new() -> Self {
        Fnv1a(Self::OFFSET)
    }

    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
        self
    }

    pub fn write_u8(&mut self, b: u8) -> &mut Self {
        self.write(&[b])
    }

    pub const fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a::new()
    }
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    Fnv1a::new().write(bytes).finish()
}

/// A 64-bit fingerprint (of an alert's labels, a group's key, a content key).
///
/// Written as 16 lowercase hex digits wherever it leaves memory (store records, the
/// API, the CLI), so the text is Alertmanager's and stays comparable across versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    pub const fn of_u64(v: u64) -> Self {
        Fingerprint(v)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// A fingerprint as records have spelled it: besides what [`FromStr`] takes, a
    /// leading `+` and leading zeros beyond 16 digits, which is what the readers of
    /// stored fingerprints accepted (`u64::from_str_radix(_, 16)`) before they were
    /// typed.
    pub fn from_record(s: &str) -> Result<Self, FingerprintError> {
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| FingerprintError(s.chars().take(40).collect()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a text is not a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintError(String);

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a fingerprint: write 1 to 16 hex digits, e.g. `0f3a9c2b4d5e6f70`",
            crate::text::visible(&self.0)
        )
    }
}

impl std::error::Error for FingerprintError {}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .map(Fingerprint)
            .ok_or_else(|| FingerprintError(s.chars().take(40).collect()))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Lenient as [`Fingerprint::from_record`], so that every record written before
/// fingerprints were typed loads as it did; written back, it is spelled as always.
impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Fingerprint::from_record(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv1a::new();
        h.write(b"foo").write(b"bar");
        assert_eq!(h.finish(), fnv1a64(b"foobar"));
    }

    #[test]
    fn fingerprints_round_trip_as_hex_and_refuse_anything_else() {
        let fp = Fingerprint(0x0f3a);
        assert_eq!(fp.to_string(), "0000000000000f3a");
        assert_eq!("0000000000000f3a".parse::<Fingerprint>(), Ok(fp));
        let json = serde_json::to_string(&fp).unwrap_or_default();
        assert_eq!(json, "\"0000000000000f3a\"");
        for bad in ["", "+1", "-1", "0x1f", "g", "11111111111111111", "1 "] {
            let err = bad.parse::<Fingerprint>();
            assert!(err.is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn records_load_with_every_spelling_their_readers_took() {
        let read = |text: &str| serde_json::from_value::<Fingerprint>(serde_json::json!(text));
        for (text, want) in [
            ("0000000000000f3a", 0x0f3a),
            ("f3a", 0x0f3a),
            ("F3A", 0x0f3a),
            ("+f3a", 0x0f3a),
            ("00000000000000000f3a", 0x0f3a),
            ("ffffffffffffffff", u64::MAX),
        ] {
            let fp = read(text).unwrap_or_default();
            assert_eq!(fp, Fingerprint(want), "{text:?}");
            assert_eq!(fp, Fingerprint::from_record(text).unwrap_or_default());
            let again = serde_json::to_value(fp).unwrap_or_default();
            assert_eq!(again, serde_json::json!(format!("{want:016x}")));
        }
        for bad in ["", "-1", "0x1f", "g", "10000000000000000", "1 "] {
            assert!(read(bad).is_err(), "{bad:?} read");
        }
    }
}
