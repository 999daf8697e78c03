//! The traffic split among the backends that satisfy a request: the decision behind a canary.
//!
//! A backend may carry a weight (`;weight=N` on its upstream, or the admin API's SetWeight): the
//! percentage, 0 to 100, of the requests it can serve that it takes. Among the backends that
//! satisfy a request, those with a weight take their share each, and the rest go to the
//! highest version without one, as if no weights were set. So `v2b=2.1.0@...;weight=5` beside
//! an unweighted `v2a=2.0.0` takes 5 % of the unpinned increment.v2 calls, and at
//! `weight=100` all of them. When the weights add up to more than 100, or no satisfying backend
//! is without one, the weighted ones share everything in proportion to their weights. Weight 0
//! keeps a backend to the requests nothing else satisfies (pinned ones, say).
//!
//! Which share a request falls in is its [`ChoicePoint`]: random, or a hash of a header's value
//! (`--sticky-header x-user-id`), so that one caller stays on one version while the weights
//! hold.

use std::hash::{Hash, Hasher};

/// The largest weight: all of the requests a backend can serve.
pub const MAX_WEIGHT: u8 = 100;

/// How finely the split is drawn: points per 100 %.
const POINTS: u64 = 1_000_000;

/// Where one request falls in the split, in `[0, POINTS)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChoicePoint(u64);

impl ChoicePoint {
    /// The point of a request whose package has no weights (selection does not read it).
    pub const UNUSED: Self = Self(0);

    /// A point drawn at random.
    pub fn random() -> Self {
        Self(fastrand::u64(..POINTS))
    }

    /// The point of `key` (a sticky header's value): the same key always falls at the same
    /// point, within this process and across processes of the same build.
    pub fn sticky(key: &[u8]) -> Self {
        // SipHash with fixed keys: the same on every run, unlike `RandomState`.
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        Self(hasher.finish() % POINTS)
    }
}

/// Picks from `candidates`, highest version first, each with its weight, the one `point`
/// falls on (see the module's documentation); `None` only when there are none.
pub(crate) fn pick<T>(candidates: &[(T, Option<u8>)], point: ChoicePoint) -> Option<&T> {
    let unweighted = candidates.iter().find(|(_, weight)| weight.is_none());
    let total: u64 = candidates
        .iter()
        .filter_map(|(_, weight)| weight.map(u64::from))
        .sum();
    // The weights are drawn over 100 % while an unweighted backend takes what they leave;
    // over their own sum when they exceed it or nothing takes the rest.
    let scale = match unweighted {
        Some(_) => total.max(100),
        None if total == 0 => return candidates.first().map(|(candidate, _)| candidate),
        None => total,
    };
    let mut reached = 0;
    for (candidate, weight) in candidates {
        let Some(weight) = weight else { continue };
        reached += u64::from(*weight);
        // point / POINTS < reached / scale, in integers.
        if point.0 * scale < reached * POINTS {
            return Some(candidate);
        }
    }
    unweighted
        .or(candidates.first())
        .map(|(candidate, _)| candidate)
}

/// Each candidate's share of the requests `pick` gives it, for `weights` in the order `pick`
/// takes its candidates (highest version first): numerators over the returned denominator.
/// What a configuration exported for another router (a mesh's weighted destinations) must
/// reproduce.
pub fn shares(weights: &[Option<u8>]) -> (Vec<u64>, u64) {
    let mut shares = vec![0; weights.len()];
    let unweighted = weights.iter().position(Option::is_none);
    let total: u64 = weights.iter().flatten().map(|w| u64::from(*w)).sum();
    let scale = match unweighted {
        Some(_) => total.max(100),
        None if total == 0 => {
            if let Some(first) = shares.first_mut() {
                *first = 1;
            }
            return (shares, 1);
        }
        None => total,
    };
    for (share, weight) in shares.iter_mut().zip(weights) {
        *share = weight.map_or(0, u64::from);
    }
    if let Some(i) = unweighted {
        shares[i] = scale - total;
    }
    (shares, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `n` evenly spread points land on each candidate.
    fn split(candidates: &[(&'static str, Option<u8>)], n: u64) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&str, u64)> = candidates.iter().map(|(c, _)| (*c, 0)).collect();
        for i in 0..n {
            let chosen = pick(candidates, ChoicePoint(i * POINTS / n)).unwrap();
            if let Some(entry) = counts.iter_mut().find(|(c, _)| c == chosen) {
                entry.1 += 1;
            }
        }
        counts
    }

    #[test]
    fn without_weights_the_first_that_is_the_highest_version_takes_everything() {
        assert_eq!(
            split(&[("v2b", None), ("v2a", None)], 100),
            [("v2b", 100), ("v2a", 0)]
        );
    }

    #[test]
    fn a_weighted_backend_takes_its_percentage_and_the_unweighted_the_rest() {
        assert_eq!(
            split(&[("v2b", Some(5)), ("v2a", None)], 1000),
            [("v2b", 50), ("v2a", 950)]
        );
        assert_eq!(
            split(&[("v2b", Some(100)), ("v2a", None)], 1000),
            [("v2b", 1000), ("v2a", 0)]
        );
        // The unweighted one takes the rest even when it is not the highest version.
        assert_eq!(
            split(&[("v2c", None), ("v2b", Some(25)), ("v2a", None)], 100),
            [("v2c", 75), ("v2b", 25), ("v2a", 0)]
        );
    }

    #[test]
    fn weights_past_one_hundred_or_alone_share_in_proportion() {
        assert_eq!(
            split(&[("a", Some(90)), ("b", Some(30)), ("c", None)], 1000),
            [("a", 750), ("b", 250), ("c", 0)]
        );
        assert_eq!(
            split(&[("a", Some(1)), ("b", Some(3))], 1000),
            [("a", 250), ("b", 750)]
        );
    }

    #[test]
    fn weight_zero_takes_only_what_nothing_else_can() {
        assert_eq!(
            split(&[("v2b", Some(0)), ("v2a", None)], 100),
            [("v2b", 0), ("v2a", 100)]
        );
        assert_eq!(split(&[("v2b", Some(0))], 10), [("v2b", 10)]);
        assert_eq!(pick::<&str>(&[], ChoicePoint(0)), None);
    }

    #[test]
    fn a_sticky_key_always_falls_at_the_same_point_and_keys_spread() {
        assert_eq!(
            ChoicePoint::sticky(b"user-7"),
            ChoicePoint::sticky(b"user-7")
        );
        let on_canary = (0..1000)
            .filter(|i| {
                let point = ChoicePoint::sticky(format!("user-{i}").as_bytes());
                pick(&[("canary", Some(10)), ("stable", None)], point) == Some(&"canary")
            })
            .count();
        // 1,000 keys at 10 %: the binomial's mean is 100, its deviation 9.5.
        assert!((50..=150).contains(&on_canary), "{on_canary} of 1000");
    }

    #[test]
    fn shares_are_what_pick_hands_out() {
        let cases: [&[Option<u8>]; 6] = [
            &[None, None],
            &[Some(5), None],
            &[None, Some(25), None],
            &[Some(90), Some(30), None],
            &[Some(1), Some(3)],
            &[Some(0)],
        ];
        for weights in cases {
            let candidates: Vec<(usize, Option<u8>)> =
                weights.iter().copied().enumerate().collect();
            let (shares, scale) = shares(weights);
            // 1,000 evenly spread points: every share here is a whole number of them.
            let mut counts = vec![0; weights.len()];
            for i in 0..1000 {
                let chosen = pick(&candidates, ChoicePoint(i * POINTS / 1000)).unwrap();
                counts[*chosen] += 1;
            }
            let expected: Vec<u64> = shares.iter().map(|s| s * 1000 / scale).collect();
            assert_eq!(counts, expected, "{weights:?}");
        }
    }
}
