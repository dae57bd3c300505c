//! Rendezvous (highest random weight) hashing: every node scores every key, and the highest
//! score owns it. All nodes with the same member list agree on owners without talking, and a
//! membership change moves only the keys it must (those of a node that left, or those a new
//! node now wins). Written by hand: it is a dozen lines over xxh3.

use std::sync::Arc;

/// The score of `node` for `key`.
pub fn score(node: &str, key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(
        key.as_bytes(),
        xxhash_rust::xxh3::xxh3_64(node.as_bytes()),
    )
}

/// The member that owns `key` (ties, which need a 64-bit collision, go to the first listed).
pub fn owner<'a>(
    members: impl IntoIterator<Item = &'a Arc<str>>,
    key: &str,
) -> Option<&'a Arc<str>> {
    let mut best: Option<(&Arc<str>, u64)> = None;
    for m in members {
        let s = score(m, key);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((m, s));
        }
    }
    best.map(|(m, _)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Arc<str>> {
        (1..=n)
            .map(|i| Arc::from(format!("127.0.0.{i}:7000")))
            .collect()
    }

    fn owners(members: &[Arc<str>], keys: &[String]) -> Vec<Arc<str>> {
        keys.iter()
            .map(|k| owner(members, k).unwrap().clone())
            .collect()
    }

    #[test]
    fn keys_spread_evenly_and_changes_move_only_what_they_must() {
        let keys: Vec<String> = (0..30_000).map(|i| format!("a.com/file.iso#{i}")).collect();
        let three = nodes(3);
        let before = owners(&three, &keys);
        for n in &three {
            let share = before.iter().filter(|o| *o == n).count() as f64 / keys.len() as f64;
            assert!((0.31..0.36).contains(&share), "{n}: {share}");
        }
        // A fourth node takes about a quarter, all from the others; nothing moves between them.
        let four = nodes(4);
        let after = owners(&four, &keys);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(a, &four[3], "a key moved between two old nodes");
                moved += 1;
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
        // A node leaving: only its keys move.
        let two: Vec<Arc<str>> = vec![three[0].clone(), three[2].clone()];
        for (b, a) in before.iter().zip(owners(&two, &keys)) {
            if *b != three[1] {
                assert_eq!(*b, a);
            }
        }
        // The order of the list does not matter.
        let mut reversed = three.clone();
        reversed.reverse();
        assert_eq!(owners(&reversed, &keys), before);
        assert!(owner(&[] as &[Arc<str>], "k").is_none());
    }
}
