//! Choosing a volume size from a CSI CapacityRange: exact bytes, rounded up to a granularity,
//! for creation and for expansion.

/// 1 MiB: the default allocation granularity.
pub const MIB: u64 = 1 << 20;
/// 1 GiB: the default size when the request gives none.
pub const GIB: u64 = 1 << 30;

/// How sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizePolicy {
    /// Every size is a multiple of this (bytes, > 0).
    pub granularity: u64,
    /// Size used when neither `required_bytes` nor `limit_bytes` is set.
    pub default_size: u64,
}

impl Default for SizePolicy {
    fn default() -> Self {
        Self {
            granularity: MIB,
            default_size: GIB,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("capacity range has a negative value (required {required}, limit {limit})")]
    Negative { required: i64, limit: i64 },
    #[error("required_bytes {required} exceeds limit_bytes {limit}")]
    RequiredAboveLimit { required: u64, limit: u64 },
    #[error(
        "no size that is a multiple of {granularity} bytes lies within [{required}, {limit}] bytes"
    )]
    NoAlignedSize {
        required: u64,
        limit: u64,
        granularity: u64,
    },
    #[error("requested size {0} bytes overflows")]
    Overflow(u64),
    #[error("capacity range sets neither required_bytes nor limit_bytes")]
    Unset,
    #[error("volume is {current} bytes, above limit_bytes {limit}; volumes cannot shrink")]
    CannotShrink { current: u64, limit: u64 },
}

/// What ControllerExpandVolume has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expansion {
    /// The volume already satisfies the range (the spec asks for OK, not an error).
    AlreadyLargeEnough,
    /// Grow the backing file to exactly this many bytes.
    GrowTo(u64),
}

impl SizePolicy {
    fn round_up(&self, bytes: u64) -> Result<u64, SizeError> {
        bytes
            .div_ceil(self.granularity)
            .checked_mul(self.granularity)
            .ok_or(SizeError::Overflow(bytes))
    }

    fn round_down(&self, bytes: u64) -> u64 {
        bytes / self.granularity * self.granularity
    }

    /// The size to provision for `required_bytes`/`limit_bytes` (0 = unset, as in CSI).
    ///
    /// The result is the smallest multiple of the granularity that is ≥ `required` (or the
    /// default size when `required` is unset, capped by `limit`), and never above `limit`.
    pub fn choose(&self, required: i64, limit: i64) -> Result<u64, SizeError> {
        if required < 0 || limit < 0 {
            return Err(SizeError::Negative { required, limit });
        }
        let (required, limit) = (required as u64, limit as u64);
        if limit != 0 && required > limit {
            return Err(SizeError::RequiredAboveLimit { required, limit });
        }
        let wanted = if required == 0 {
            match limit {
                0 => self.default_size,
                _ => self.default_size.min(limit),
            }
        } else {
            required
        };
        let size = self.round_up(wanted)?;
        if limit == 0 || size <= limit {
            return Ok(size);
        }
        // Rounding up overshot the limit; only an unset `required` may round down instead.
        let down = self.round_down(limit);
        if required == 0 && down > 0 {
            return Ok(down);
        }
        Err(SizeError::NoAlignedSize {
            required,
            limit,
            granularity: self.granularity,
        })
    }

    /// The largest multiple of the granularity not above `bytes` (what a volume may ask for
    /// when `bytes` are free).
    pub fn largest_within(&self, bytes: u64) -> u64 {
        self.round_down(bytes)
    }

    /// Plans the expansion of a volume of `current` bytes to a CapacityRange (0 = unset).
    /// Volumes only grow: a range the current size already satisfies needs nothing, and a
    /// limit below the current size cannot be met.
    pub fn plan_expansion(
        &self,
        current: u64,
        required: i64,
        limit: i64,
    ) -> Result<Expansion, SizeError> {
        if required < 0 || limit < 0 {
            return Err(SizeError::Negative { required, limit });
        }
        if required == 0 && limit == 0 {
            return Err(SizeError::Unset);
        }
        let (required_bytes, limit_bytes) = (required as u64, limit as u64);
        if limit_bytes != 0 && current > limit_bytes {
            return Err(SizeError::CannotShrink {
                current,
                limit: limit_bytes,
            });
        }
        if required_bytes <= current {
            return Ok(Expansion::AlreadyLargeEnough);
        }
        self.choose(required, limit).map(Expansion::GrowTo)
    }

    /// True if an existing volume of `size` bytes satisfies the range (for idempotent creates).
    pub fn satisfies(size: u64, required: i64, limit: i64) -> bool {
        (required <= 0 || size >= required as u64) && (limit <= 0 || size <= limit as u64)
    }
}

/// A size as operators write it in flags: plain bytes or a number with a binary unit (`Ki`,
/// `Mi`, `Gi`, `Ti`), as Kubernetes quantities spell them.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    let (digits, factor) = units
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|d| (d, *factor)))
        .unwrap_or((text, 1));
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is not a size (bytes, or a number with Ki, Mi, Gi or Ti)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: SizePolicy = SizePolicy {
        granularity: MIB,
        default_size: GIB,
    };

    #[test]
    fn rounds_up_never_down() {
        assert_eq!(P.choose(1, 0), Ok(MIB));
        assert_eq!(P.choose(MIB as i64, 0), Ok(MIB));
        assert_eq!(P.choose(MIB as i64 + 1, 0), Ok(2 * MIB));
        // 1.5 TiB stays 1.5 TiB: no truncation to whole units.
        let tib_and_half = (3u64 << 40) / 2;
        assert_eq!(P.choose(tib_and_half as i64, 0), Ok(tib_and_half));
    }

    #[test]
    fn unset_means_default_capped_by_limit() {
        assert_eq!(P.choose(0, 0), Ok(GIB));
        assert_eq!(P.choose(0, (512 * MIB) as i64), Ok(512 * MIB));
        assert_eq!(P.choose(0, (512 * MIB + 5) as i64), Ok(512 * MIB));
        assert!(matches!(
            P.choose(0, 1000),
            Err(SizeError::NoAlignedSize { .. })
        ));
    }

    #[test]
    fn limit_is_honoured() {
        assert_eq!(P.choose(GIB as i64, GIB as i64), Ok(GIB));
        assert!(matches!(
            P.choose(GIB as i64 + 1, GIB as i64 + 10),
            Err(SizeError::NoAlignedSize { .. })
        ));
        assert!(matches!(
            P.choose(10, 5),
            Err(SizeError::RequiredAboveLimit { .. })
        ));
    }

    #[test]
    fn rejects_negative_and_overflow() {
        assert!(matches!(P.choose(-1, 0), Err(SizeError::Negative { .. })));
        assert!(matches!(P.choose(0, -1), Err(SizeError::Negative { .. })));
        // The largest request still rounds up without overflowing.
        assert_eq!(P.choose(i64::MAX, 0), Ok(1 << 63));
    }

    #[test]
    fn expansion_grows_rounding_up_and_never_shrinks() {
        assert_eq!(
            P.plan_expansion(GIB, (GIB + 1) as i64, 0),
            Ok(Expansion::GrowTo(GIB + MIB))
        );
        assert_eq!(
            P.plan_expansion(GIB, (2 * GIB) as i64, (2 * GIB) as i64),
            Ok(Expansion::GrowTo(2 * GIB))
        );
        // Asking for less than the current size is satisfied as it is.
        assert_eq!(
            P.plan_expansion(2 * GIB, GIB as i64, 0),
            Ok(Expansion::AlreadyLargeEnough)
        );
        assert_eq!(
            P.plan_expansion(GIB, GIB as i64, 0),
            Ok(Expansion::AlreadyLargeEnough)
        );
        assert_eq!(
            P.plan_expansion(GIB, 0, (2 * GIB) as i64),
            Ok(Expansion::AlreadyLargeEnough)
        );
        // ...but a limit below the current size would need a shrink.
        assert_eq!(
            P.plan_expansion(2 * GIB, GIB as i64, GIB as i64),
            Err(SizeError::CannotShrink {
                current: 2 * GIB,
                limit: GIB
            })
        );
        assert!(matches!(
            P.plan_expansion(GIB, (GIB + 1) as i64, (GIB + 2) as i64),
            Err(SizeError::NoAlignedSize { .. })
        ));
        assert_eq!(P.plan_expansion(GIB, 0, 0), Err(SizeError::Unset));
        assert!(matches!(
            P.plan_expansion(GIB, -1, 0),
            Err(SizeError::Negative { .. })
        ));
    }

    #[test]
    fn largest_within_rounds_down() {
        assert_eq!(P.largest_within(GIB + 5), GIB);
        assert_eq!(P.largest_within(MIB - 1), 0);
    }

    #[test]
    fn satisfies_checks_both_bounds() {
        assert!(SizePolicy::satisfies(GIB, GIB as i64, 0));
        assert!(SizePolicy::satisfies(GIB, 0, 0));
        assert!(!SizePolicy::satisfies(GIB, GIB as i64 + 1, 0));
        assert!(!SizePolicy::satisfies(2 * GIB, 0, GIB as i64));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1Mi"), Ok(1 << 20));
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("2Ti"), Ok(2 << 40));
        for bad in ["", "1M", "1.5Gi", "-1", "Gi", "99999999999Ti"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
