//! Thin provisioning: how much more the pool may promise.
//!
//! Images are sparse, so the pool's free space barely moves when a volume is created; it
//! fills as volumes are written. The driver therefore budgets on what it has promised: the sum
//! of its volumes' sizes (provisioned bytes) may not exceed the pool size times the
//! overcommit ratio. Free space still bounds it, scaled by the same ratio, so data that is
//! not the driver's (or volumes already written full) leaves less to promise.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use routeros::{FileDisk, Pool};

use super::rules::owned_image;

/// How much the driver may promise per byte of pool: 1.0 promises no more than the pool
/// holds; 2.0 promises twice that, betting that volumes stay half empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OvercommitRatio {
    /// In thousandths, so the configuration stays `Eq` and the arithmetic exact.
    thousandths: u32,
}

impl OvercommitRatio {
    pub const ONE: Self = Self { thousandths: 1000 };
    const MAX_THOUSANDTHS: u32 = 100_000;

    /// A ratio from its decimal text (`1`, `1.5`, `0.9`): more than 0, at most 100, at most
    /// three decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} must be a decimal number above 0 and at most 100");
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty() && fraction.is_empty() || fraction.len() > 3 {
            return Err(bad());
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) {
            return Err(bad());
        }
        let whole: u32 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction: u32 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
        let thousandths = whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(bad)?;
        if thousandths == 0 || thousandths > Self::MAX_THOUSANDTHS {
            return Err(bad());
        }
        Ok(Self { thousandths })
    }

    /// `bytes` times the ratio, rounded down.
    pub fn of(self, bytes: u64) -> u64 {
        let scaled = u128::from(bytes) * u128::from(self.thousandths) / 1000;
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

impl Default for OvercommitRatio {
    fn default() -> Self {
        Self::ONE
    }
}

impl std::fmt::Display for OvercommitRatio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, fraction) = (self.thousandths / 1000, self.thousandths % 1000);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let text = format!("{fraction:03}");
            write!(f, "{whole}.{}", text.trim_end_matches('0'))
        }
    }
}

/// The pool and what the driver has promised from it, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityReading {
    pub pool: Pool,
    /// Sum of the sizes of the driver's volumes.
    pub provisioned: u64,
    /// The slots of those volumes, so that creates made since are counted once.
    pub volumes: HashSet<String>,
}

impl CapacityReading {
    pub fn new(pool: Pool, disks: &[FileDisk], base_path: &str) -> Self {
        let ours: Vec<&FileDisk> = disks
            .iter()
            .filter(|d| owned_image(d, base_path).is_some())
            .collect();
        Self {
            pool,
            provisioned: ours
                .iter()
                .fold(0u64, |sum, d| sum.saturating_add(d.file_size)),
            volumes: ours.iter().map(|d| d.slot.clone()).collect(),
        }
    }
}

/// Bytes the pool may still promise: the ratio's share of the pool size minus what is
/// provisioned, and no more than the ratio's share of the free space.
pub fn available(pool: &Pool, provisioned: u64, ratio: OvercommitRatio) -> u64 {
    ratio
        .of(pool.size)
        .saturating_sub(provisioned)
        .min(ratio.of(pool.free))
}

/// What this controller has promised that a reading may not show yet: creates in flight and
/// volumes created since the reading was taken. Without it, a burst of creates between two
/// readings would each see the same budget and together overshoot it.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    in_flight: u64,
    created: HashMap<String, u64>,
}

impl LedgerState {
    /// Sizes come from the device: added saturating, so an absurd one cannot wrap around.
    fn promised(&self, reading: &CapacityReading) -> u64 {
        self.created.values().fold(
            reading.provisioned.saturating_add(self.in_flight),
            |sum, size| sum.saturating_add(*size),
        )
    }
}

impl Ledger {
    /// Provisioned bytes as the reading shows them plus what this controller added since.
    /// Volumes the reading already lists are forgotten here.
    pub fn provisioned(&self, reading: &CapacityReading) -> u64 {
        let mut state = self.lock();
        state
            .created
            .retain(|slot, _| !reading.volumes.contains(slot));
        state.promised(reading)
    }

    /// A volume deleted: no longer promised, even before a reading shows it gone.
    pub fn forget(&self, slot: &str) {
        self.lock().created.remove(slot);
    }

    /// Reserves `bytes` if `fits` says the total with them is within budget. The
    /// reservation is released when dropped unless [`Reservation::created`] was called.
    pub fn reserve(
        &self,
        reading: &CapacityReading,
        bytes: u64,
        fits: impl FnOnce(u64) -> bool,
    ) -> Option<Reservation<'_>> {
        let mut state = self.lock();
        state
            .created
            .retain(|slot, _| !reading.volumes.contains(slot));
        if !fits(state.promised(reading).saturating_add(bytes)) {
            return None;
        }
        state.in_flight = state.in_flight.saturating_add(bytes);
        Some(Reservation {
            ledger: self,
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes held for one create.
#[derive(Debug)]
pub struct Reservation<'a> {
    ledger: &'a Ledger,
    bytes: u64,
}

impl Reservation<'_> {
    /// The create made volume `slot` of `size` bytes: counted until a reading lists it.
    pub fn created(self, slot: &str, size: u64) {
        self.ledger.lock().created.insert(slot.to_owned(), size);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        state.in_flight = state.in_flight.saturating_sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::GIB;

    fn pool(size: u64, free: u64) -> Pool {
        Pool {
            slot: "pool".into(),
            mount_point: "storage-pool".into(),
            fs: "btrfs".into(),
            size,
            free,
            mounted: true,
            state: None,
        }
    }

    fn reading(provisioned: u64, volumes: &[&str]) -> CapacityReading {
        CapacityReading {
            pool: pool(100 * GIB, 100 * GIB),
            provisioned,
            volumes: volumes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ratios_parse_exactly_and_refuse_nonsense() {
        let r = |t: &str| OvercommitRatio::parse(t).map(|r| r.of(1000));
        assert_eq!(r("1"), Ok(1000));
        assert_eq!(r("1.5"), Ok(1500));
        assert_eq!(r("0.25"), Ok(250));
        assert_eq!(r(".5"), Ok(500));
        assert_eq!(r("100"), Ok(100_000));
        for bad in [
            "", "0", "0.0", "-1", "1.2345", "100.001", "1e3", "x", ".", "1,5",
        ] {
            assert!(OvercommitRatio::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(OvercommitRatio::parse("2.50").unwrap().to_string(), "2.5");
        assert_eq!(OvercommitRatio::ONE.to_string(), "1");
        assert_eq!(OvercommitRatio::ONE.of(u64::MAX), u64::MAX);
    }

    #[test]
    fn three_decimals_are_kept_and_signs_refused() {
        // Thousandths are the unit: a third decimal is precision, not an error.
        assert_eq!(
            OvercommitRatio::parse("1.125").map(|r| r.of(8000)),
            Ok(9000)
        );
        assert_eq!(
            OvercommitRatio::parse("1.125").unwrap().to_string(),
            "1.125"
        );
        // `u32::from_str` takes a leading `+`; the ratio's grammar does not.
        for signed in ["+1", "1.+5", "+.5"] {
            assert!(OvercommitRatio::parse(signed).is_err(), "{signed:?}");
        }
    }

    #[test]
    fn available_is_bounded_by_promises_and_by_free_space() {
        // A sparse pool: 30 GiB promised, almost nothing written.
        assert_eq!(
            available(&pool(100 * GIB, 99 * GIB), 30 * GIB, OvercommitRatio::ONE),
            70 * GIB
        );
        // Other data fills the pool: free space bounds the promise.
        assert_eq!(
            available(&pool(100 * GIB, 10 * GIB), 30 * GIB, OvercommitRatio::ONE),
            10 * GIB
        );
        let double = OvercommitRatio::parse("2").unwrap();
        assert_eq!(
            available(&pool(100 * GIB, 99 * GIB), 150 * GIB, double),
            50 * GIB
        );
        // Promised beyond the budget (ratio lowered later): nothing, not a negative.
        assert_eq!(
            available(&pool(100 * GIB, 99 * GIB), 150 * GIB, OvercommitRatio::ONE),
            0
        );
    }

    #[test]
    fn the_ledger_counts_creates_until_a_reading_lists_them() {
        let ledger = Ledger::default();
        let before = reading(10 * GIB, &["a"]);
        let fits = |total: u64| total <= 40 * GIB;
        let r1 = ledger.reserve(&before, 20 * GIB, fits).unwrap();
        // In flight counts: a second create of 20 GiB would overshoot.
        assert!(ledger.reserve(&before, 20 * GIB, fits).is_none());
        assert_eq!(ledger.provisioned(&before), 30 * GIB);
        r1.created("b", 20 * GIB);
        assert_eq!(
            ledger.provisioned(&before),
            30 * GIB,
            "created, not yet read"
        );
        // A failed create gives its reservation back.
        drop(ledger.reserve(&before, 5 * GIB, fits).unwrap());
        assert_eq!(ledger.provisioned(&before), 30 * GIB);
        // A newer reading lists b: counted once.
        let after = reading(30 * GIB, &["a", "b"]);
        assert_eq!(ledger.provisioned(&after), 30 * GIB);
        assert!(ledger.reserve(&after, 10 * GIB, fits).is_some());
        // A volume deleted before any reading shows it is no longer counted.
        let r = ledger.reserve(&after, 5 * GIB, fits).unwrap();
        r.created("c", 5 * GIB);
        assert_eq!(ledger.provisioned(&after), 35 * GIB);
        ledger.forget("c");
        assert_eq!(ledger.provisioned(&after), 30 * GIB);
        // Absurd sizes saturate instead of wrapping.
        let huge = reading(u64::MAX - 1, &[]);
        let held = ledger.reserve(&huge, 10, |_| true).unwrap();
        assert_eq!(ledger.provisioned(&huge), u64::MAX);
        let mut seen = 0;
        let refused = ledger.reserve(&huge, 10, |total| {
            seen = total;
            false
        });
        assert!(refused.is_none());
        assert_eq!(seen, u64::MAX);
        drop(held);
    }
}
