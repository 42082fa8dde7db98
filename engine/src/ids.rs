//! Readable, sortable ids: a type prefix, then 10 characters of millisecond
//! time and 16 random characters in lower-case Crockford base32
//! (`mc-01jd3k8z7q4v0c2m9x1t5r8w6e`). Time first keeps inserts local in
//! B-tree indexes; 80 random bits keep ids unguessable and collision-free.

use crate::clock::Clock;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id with the given prefix (`mc`, `iss`, `ag`, `job`, `ap`, ...).
pub fn new_id(prefix: &str, clock: &dyn Clock) -> String {
    let ms = u64::try_from(clock.now_millis()).unwrap_or(0) & ((1 << 50) - 1);
    let mut random = [0u8; 10];
    // The system RNG failing is not recoverable in any meaningful way; fall
    // back to zeros would risk collisions, so make it loud.
    if aws_lc_rs::rand::fill(&mut random).is_err() {
        panic!("system random number generator failed");
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('-');
    for i in (0..10).rev() {
        out.push(ALPHABET[((ms >> (i * 5)) & 31) as usize] as char);
    }
    let r = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[6..].copy_from_slice(&random);
        b
    });
    for i in (0..16).rev() {
        out.push(ALPHABET[((r >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// Whether `id` looks like an id with `prefix` (cheap check before a lookup).
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len() + 1
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'-'
        && id.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn ids_are_prefixed_unique_and_time_ordered() {
        let clock = ManualClock::new(1_700_000_000);
        let a = new_id("mc", &clock);
        clock.advance(1);
        let b = new_id("mc", &clock);
        assert!(a.starts_with("mc-") && a.len() == 29, "{a}");
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
        assert!(has_prefix(&a, "mc"));
        assert!(!has_prefix(&a, "iss"));
    }
}
