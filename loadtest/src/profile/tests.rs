//! Stages interpolate linearly, invert their rate integral into send
//! times, and say when each connection slot is up.

use super::*;
use crate::cli::parse_stages;

const S: u64 = 1_000_000_000;

#[test]
fn stages_parse_and_interpolate_linearly() {
    let p = parse_stages("10s:100, 20s:100, 10s:0").unwrap();
    assert_eq!(p.total(), Duration::from_secs(40));
    assert_eq!(p.max_target(), 100);
    assert_eq!(p.target_at(0), 0.0);
    assert_eq!(p.target_at(5 * S), 50.0);
    assert_eq!(p.target_at(25 * S), 100.0);
    assert_eq!(p.target_at(35 * S), 50.0);
    assert_eq!(p.stage_at(15 * S), 1);
    assert!(parse_stages("10s").is_err());
    assert!(parse_stages("soon:10").is_err());
    assert!(parse_stages("").is_err());
}

#[test]
fn message_times_invert_the_rate_integral() {
    // 0 → 1000/s over 2 s, then 1000/s for 1 s: 1000 + 1000 messages.
    let p = parse_stages("2s:1k,1s:1k").unwrap();
    assert_eq!(p.area_to(3 * S), 2000.0);
    assert_eq!(p.time_of(1000.0), Some(2 * S));
    // Half of the ramp's messages come in its last 0.59 s (√½ of 2 s).
    let t = p.time_of(500.0).unwrap();
    assert!(t.abs_diff(1_414_213_562) < 1000, "{t}");
    assert_eq!(p.time_of(1500.0), Some(2 * S + S / 2));
    assert_eq!(p.time_of(2000.0), None);
    let flat = parse_stages("1s:100").unwrap().time_of(0.0);
    assert_eq!(flat, Some(0));
}

#[test]
fn slots_are_up_while_the_target_is_above_them() {
    let p = parse_stages("10s:10,10s:10,10s:0").unwrap();
    assert_eq!(p.active(0), vec![(0, 30 * S)]);
    assert_eq!(p.active(9), vec![(9 * S, 21 * S)]);
    assert_eq!(p.active(10), vec![]);
    let twice = parse_stages("1s:2,1s:0,1s:2").unwrap();
    assert_eq!(
        twice.active(1),
        vec![(S / 2, S + S / 2), (2 * S + S / 2, 3 * S)]
    );
    // A stage of no time is a jump.
    let jump = parse_stages("0s:5,1s:5").unwrap();
    assert_eq!(jump.active(4), vec![(0, S)]);
}
