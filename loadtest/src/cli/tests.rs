//! The value parsers accept what the help text promises and refuse the rest;
//! the subcommand and the required URL.

use std::net::IpAddr;

use super::*;

#[test]
fn durations_accept_units_and_fractions() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5 fortnights").is_err());
}

#[test]
fn counts_accept_k_m_g() {
    assert_eq!(parse_count("10k"), Ok(10_000));
    assert_eq!(parse_count("1.5M"), Ok(1_500_000));
    assert_eq!(parse_count("42"), Ok(42));
    assert!(parse_count("1.5").is_err());
    assert!(parse_count("ten").is_err());
    assert_eq!(parse_per_second("2k/s"), Ok(2000));
}

#[test]
fn sizes_accept_decimal_and_binary_units() {
    assert_eq!(parse_size("20"), Ok(20));
    assert_eq!(parse_size("16KiB"), Ok(16 << 10));
    assert_eq!(parse_size("1k"), Ok(1000));
    assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
    assert_eq!(parse_size("1MB"), Ok(1_000_000));
    assert!(parse_size("1 parsec").is_err());
}

#[test]
fn segments_and_start_times_parse() {
    assert_eq!(parse_segment("1/4"), Ok(Segment { index: 1, count: 4 }));
    assert!(parse_segment("4/4").is_err() && parse_segment("0/0").is_err());
    assert!(parse_segment("1").is_err());
    let t = parse_start_at("2026-11-28T10:00:00Z").unwrap();
    assert_eq!(parse_start_at("1795860000").unwrap(), t);
    assert_eq!(
        parse_start_at("1795860000.5").unwrap(),
        t + Duration::from_millis(500)
    );
    assert!(parse_start_at("tomorrow").is_err());
}

#[test]
fn headers_need_a_name_and_a_colon() {
    assert_eq!(
        parse_header("X-Token: abc:d"),
        Ok(("X-Token".into(), "abc:d".into()))
    );
    assert!(parse_header("nocolon").is_err());
    assert!(parse_header("Bad Name: x").is_err());
    assert!(parse_header("X: a\r\nInjected: 1").is_err());
}

#[test]
fn source_ips_expand_ranges_and_lists() {
    let r = parse_source_ips("127.0.0.2-127.0.0.4,10.0.0.1").unwrap();
    let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.0.0.1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(r.0, want);
    assert_eq!(parse_source_ips("::1-::2").unwrap().0.len(), 2);
    assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
    assert!(parse_source_ips("127.0.0.1-::1").is_err());
    assert!(parse_source_ips("").is_err());
}

#[test]
fn merge_is_a_subcommand_and_url_is_required_otherwise() {
    let cli = Cli::try_parse_from(["wsecho-load", "merge", "a.json", "b.json"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Merge(m)) if m.files.len() == 2));
    assert!(Cli::try_parse_from(["wsecho-load"]).is_err());
    let cli = Cli::try_parse_from(["wsecho-load", "ws://x/", "-c", "1k", "-d", "500ms"]).unwrap();
    assert_eq!(cli.run.connections, 1000);
    assert!(
        Cli::try_parse_from(["wsecho-load", "ws://x/", "--rate", "1", "--in-flight", "2"]).is_err()
    );
}
