//! The filler: one 64-bit word per 8 bytes, `seed + j·φ`, written and
//! compared by straight loops, widened at run time where the CPU allows.

use super::GOLDEN;

/// Text filler: each byte mapped into `'0'..='o'` (printable ASCII); no
/// carries cross bytes, so it stays one vector operation per word.
#[inline(always)]
fn ascii(w: u64) -> u64 {
    (w & 0x3f3f_3f3f_3f3f_3f3f) + 0x3030_3030_3030_3030
}

#[inline(always)]
fn filler_word<const TEXT: bool>(w: u64) -> u64 {
    if TEXT { ascii(w) } else { w }
}

pub(super) fn fill<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
    #[cfg(target_arch = "x86_64")]
    if wide::fill::<TEXT>(dst, seed, m64) {
        return;
    }
    fill_any::<TEXT>(dst, seed, m64)
}

#[inline(always)]
pub(super) fn fill_any<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
    let mut w = seed;
    let mut chunks = dst.chunks_exact_mut(8);
    for c in &mut chunks {
        w = w.wrapping_add(GOLDEN);
        c.copy_from_slice(&(filler_word::<TEXT>(w) ^ m64).to_le_bytes());
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        w = w.wrapping_add(GOLDEN);
        let bytes = (filler_word::<TEXT>(w) ^ m64).to_le_bytes();
        rem.copy_from_slice(&bytes[..rem.len()]);
    }
}

/// Compares bytes `start..`, XORed with `m64` (a key twice over, or 0),
/// with the filler: byte by byte in the (at most two) 8-byte chunks cut by
/// the header's or the payload's end, a word at a time between them,
/// OR-ing differences so the loop has no early exit and vectorises.
pub(super) fn filler_ok<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(ok) = wide::filler_ok::<TEXT>(src, start, seed, m64) {
        return ok;
    }
    filler_ok_any::<TEXT>(src, start, seed, m64)
}

#[inline(always)]
pub(super) fn filler_ok_any<const TEXT: bool>(
    src: &[u8],
    start: usize,
    seed: u64,
    m64: u64,
) -> bool {
    let n = src.len();
    let m = m64.to_le_bytes();
    if start >= n {
        return true;
    }
    let word =
        |j: usize| filler_word::<TEXT>(seed.wrapping_add((j as u64 + 1).wrapping_mul(GOLDEN)));
    let partial = |j: usize| {
        let expected = word(j).to_le_bytes();
        let (lo, hi) = ((8 * j).max(start), (8 * j + 8).min(n));
        (lo..hi).fold(0u8, |d, p| d | (src[p] ^ m[p & 7] ^ expected[p - 8 * j]))
    };
    let first_full = start.div_ceil(8);
    let full_end = n / 8;
    let mut diff = 0u64;
    if !start.is_multiple_of(8) {
        diff |= partial(start / 8) as u64;
    }
    if first_full < full_end {
        let mut w = seed.wrapping_add((first_full as u64).wrapping_mul(GOLDEN));
        for c in src[8 * first_full..8 * full_end].chunks_exact(8) {
            w = w.wrapping_add(GOLDEN);
            let got = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            diff |= got ^ m64 ^ filler_word::<TEXT>(w);
        }
    }
    if !n.is_multiple_of(8) && full_end >= first_full {
        diff |= partial(full_end) as u64;
    }
    diff == 0
}

/// The filler loops compiled for wider vectors, chosen at run time. At
/// 16 KiB they were a fifth of the generator's CPU (perf at 10 x 16 KiB:
/// `write_masked` 10 %, `filler_ok` 11 %) with SSE2, all that the release
/// build may assume of an x86-64 CPU; AVX-512 or AVX2 run the same loops
/// 4 or 2 words at a time. std caches the CPU check, so it costs a load.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide {
    use std::arch::is_x86_feature_detected;

    /// Fills as [`super::fill_any`] does; false when the CPU has neither.
    pub(super) fn fill<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) -> bool {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { fill_avx512::<TEXT>(dst, seed, m64) };
        } else if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { fill_avx2::<TEXT>(dst, seed, m64) };
        } else {
            return false;
        }
        true
    }

    /// Checks as [`super::filler_ok_any`] does; `None` when the CPU has
    /// neither.
    pub(super) fn filler_ok<const TEXT: bool>(
        src: &[u8],
        start: usize,
        seed: u64,
        m64: u64,
    ) -> Option<bool> {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            Some(unsafe { filler_ok_avx512::<TEXT>(src, start, seed, m64) })
        } else if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            Some(unsafe { filler_ok_avx2::<TEXT>(src, start, seed, m64) })
        } else {
            None
        }
    }

    #[target_feature(enable = "avx512f")]
    fn fill_avx512<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
        super::fill_any::<TEXT>(dst, seed, m64)
    }

    #[target_feature(enable = "avx2")]
    fn fill_avx2<const TEXT: bool>(dst: &mut [u8], seed: u64, m64: u64) {
        super::fill_any::<TEXT>(dst, seed, m64)
    }

    #[target_feature(enable = "avx512f")]
    fn filler_ok_avx512<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
        super::filler_ok_any::<TEXT>(src, start, seed, m64)
    }

    #[target_feature(enable = "avx2")]
    fn filler_ok_avx2<const TEXT: bool>(src: &[u8], start: usize, seed: u64, m64: u64) -> bool {
        super::filler_ok_any::<TEXT>(src, start, seed, m64)
    }
}
