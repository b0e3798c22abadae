//! Latency histogram of the HTTP/2 load tool: lock-free, log-linear, shared by every stream.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A lock-free log-linear histogram of microseconds: exact below 128, then 64 buckets per
/// power of two (about 1.6 % wide).
pub(crate) struct Hist {
    pub(crate) buckets: Vec<AtomicU64>,
    pub(crate) max: AtomicU64,
}

impl Hist {
    pub(crate) const SUB: u64 = 64;

    pub(crate) fn new() -> Hist {
        Hist {
            buckets: (0..Self::index(u64::MAX) + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }

    pub(crate) fn index(v: u64) -> usize {
        if v < 2 * Self::SUB {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()); // >= 7
        let m = v >> (e - 6); // 64..128
        (2 * Self::SUB + (e - 7) * Self::SUB + (m - Self::SUB)) as usize
    }

    /// The smallest value of bucket `i`.
    pub(crate) fn low(i: usize) -> u64 {
        let i = i as u64;
        if i < 2 * Self::SUB {
            return i;
        }
        let e = (i - 2 * Self::SUB) / Self::SUB + 7;
        let m = (i - 2 * Self::SUB) % Self::SUB + Self::SUB;
        m << (e - 6)
    }

    pub(crate) fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The value at quantile `q` (the low end of its bucket).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Self::low(i);
            }
        }
        self.max.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn histogram_buckets_are_narrow_and_ordered() {
        let mut prev = 0;
        for v in (0..200).chain((200..20_000_000).step_by(997)) {
            let i = Hist::index(v);
            assert!(i >= prev, "{v}");
            prev = i;
            let low = Hist::low(i);
            assert!(low <= v && v - low <= v / 64, "{v}: bucket from {low}");
        }
        let h = Hist::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        assert!((492..=500).contains(&p50), "{p50}");
        assert!(h.quantile(0.99) >= 976, "{}", h.quantile(0.99));
        assert_eq!(h.max.load(Relaxed), 1000);
    }
}
