use super::*;

/// The response to `lines` under `policy`, as the header text (`None`: declined).
fn answer(lines: &[&str], policy: &DeflatePolicy) -> Option<String> {
    negotiate(lines.iter().map(|l| l.as_bytes()), policy).map(|p| p.response_header())
}

const TAKEOVER: DeflatePolicy = DeflatePolicy::TAKEOVER;
const ON: DeflatePolicy = DeflatePolicy::ON;

#[test]
fn negotiation_table() {
    let pmd = "permessage-deflate";
    let nct = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    #[rustfmt::skip]
    let cases: &[(&[&str], DeflatePolicy, Option<&str>)] = &[
        // No offer, other extensions, or the policy off: no extension.
        (&[], ON, None),
        (&["x-webkit-deflate-frame"], ON, None),
        (&[pmd], DeflatePolicy::OFF, None),
        // The browsers' offers.
        (&["permessage-deflate; client_max_window_bits"], TAKEOVER, Some(pmd)),
        (&["permessage-deflate"], TAKEOVER, Some(pmd)),
        (&["permessage-deflate; client_max_window_bits"], ON, Some(nct)),
        // Each parameter alone.
        (&["permessage-deflate; server_no_context_takeover"], TAKEOVER,
            Some("permessage-deflate; server_no_context_takeover")),
        (&["permessage-deflate; client_no_context_takeover"], TAKEOVER,
            Some("permessage-deflate; client_no_context_takeover")),
        (&["permessage-deflate; server_max_window_bits=10"], TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=10")),
        (&["permessage-deflate; server_max_window_bits=8"], TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=8")),
        (&["permessage-deflate; client_max_window_bits=9"], TAKEOVER,
            Some("permessage-deflate; client_max_window_bits=9")),
        (&["permessage-deflate; client_max_window_bits=15"], TAKEOVER,
            Some("permessage-deflate; client_max_window_bits=15")),
        // Quoted values and odd spacing and case are still the same offer.
        (&["Permessage-Deflate ;server_max_window_bits = \"12\""], TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=12")),
        (&["permessage-deflate; client_max_window_bits=\"1\\0\""], TAKEOVER,
            Some("permessage-deflate; client_max_window_bits=10")),
        // The policy bounds what the client asked for, and names its own
        // window unasked; it bounds the client only when the client offers
        // client_max_window_bits.
        (&["permessage-deflate; server_max_window_bits=12"], pol("server_max_window_bits=10"),
            Some("permessage-deflate; server_max_window_bits=10")),
        (&["permessage-deflate; server_max_window_bits=9"], pol("server_max_window_bits=10"),
            Some("permessage-deflate; server_max_window_bits=9")),
        (&[pmd], pol("server_max_window_bits=11"),
            Some("permessage-deflate; server_max_window_bits=11")),
        (&["permessage-deflate; client_max_window_bits"], pol("client_max_window_bits=10"),
            Some("permessage-deflate; client_max_window_bits=10")),
        (&["permessage-deflate; client_max_window_bits=9"], pol("client_max_window_bits=10"),
            Some("permessage-deflate; client_max_window_bits=9")),
        (&[pmd], pol("client_max_window_bits=10"), Some(pmd)),
        // Everything at once.
        (&["permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
            server_max_window_bits=14; client_max_window_bits=13"], TAKEOVER,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                  server_max_window_bits=14; client_max_window_bits=13")),
        // Bad offers are declined.
        (&["permessage-deflate; server_max_window_bits"], ON, None),
        (&["permessage-deflate; server_max_window_bits=7"], ON, None),
        (&["permessage-deflate; server_max_window_bits=16"], ON, None),
        (&["permessage-deflate; server_max_window_bits=08"], ON, None),
        (&["permessage-deflate; server_max_window_bits=+9"], ON, None),
        (&["permessage-deflate; client_max_window_bits=0"], ON, None),
        (&["permessage-deflate; client_max_window_bits=\"\""], ON, None),
        (&["permessage-deflate; client_max_window_bits=\"1 0\""], ON, None),
        (&["permessage-deflate; server_no_context_takeover=1"], ON, None),
        (&["permessage-deflate; client_no_context_takeover=\"\""], ON, None),
        (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], ON, None),
        (&["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], ON, None),
        (&["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"], ON, None),
        (&["permessage-deflate; mux"], ON, None),
        (&["permessage-deflate; client_max_window_bits=\"10"], ON, None),
        (&["permessage-deflate;"], ON, None),
        (&["permessage-deflate; =10"], ON, None),
        (&["permessage-deflate server_no_context_takeover"], ON, None),
        (&["permessage-deflate; server_max_window_bits=10 10"], ON, None),
        // Several offers: the first acceptable one wins, on one line or many.
        (&["permessage-deflate; mux, permessage-deflate; server_max_window_bits=10"], TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=10")),
        (&["permessage-deflate; server_max_window_bits=99", "permessage-deflate"], TAKEOVER,
            Some(pmd)),
        (&["foo; a=\"x, y\", permessage-deflate; client_no_context_takeover, permessage-deflate"],
            TAKEOVER, Some("permessage-deflate; client_no_context_takeover")),
        (&["x-foo, , permessage-deflate; server_max_window_bits=9, permessage-deflate"], TAKEOVER,
            Some("permessage-deflate; server_max_window_bits=9")),
        (&["permessage-deflate; client_max_window_bits=\"8\", permessage-deflate"], TAKEOVER,
            Some("permessage-deflate; client_max_window_bits=8")),
        (&["broken\"", "permessage-deflate"], TAKEOVER, Some(pmd)),
    ];
    for (lines, policy, expected) in cases {
        let expected = expected.map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(
            answer(lines, policy),
            expected,
            "offer {lines:?} under `{policy}`"
        );
    }
}

fn pol(s: &str) -> DeflatePolicy {
    s.parse().unwrap()
}

#[test]
fn params_report_effective_windows() {
    let p = negotiate(
        [&b"permessage-deflate; server_max_window_bits=9"[..]],
        &TAKEOVER,
    )
    .unwrap();
    assert_eq!((p.server_window_bits(), p.client_window_bits()), (9, 15));
    assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
    let p = negotiate([&b"permessage-deflate"[..]], &ON).unwrap();
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
}

#[test]
fn non_utf8_lines_are_skipped() {
    let lines: [&[u8]; 2] = [b"permessage-deflate; x=\xff", b"permessage-deflate"];
    assert!(negotiate(lines, &TAKEOVER).is_some());
}

#[test]
fn list_splitting_respects_quotes() {
    let parts: Vec<&str> = split_list(r#"a; b="x,\"y", ,c"#).collect();
    assert_eq!(parts, [r#"a; b="x,\"y""#, "c"]);
}

#[test]
fn parser_unquotes_values() {
    let ext = parse_extension(r#"e ; p ; q="a\b" ;r=tok"#).unwrap();
    assert_eq!(ext.name, "e");
    let got: Vec<(&str, Option<&str>)> = ext
        .params
        .iter()
        .map(|p| (p.name, p.value.as_deref()))
        .collect();
    assert_eq!(got, [("p", None), ("q", Some("ab")), ("r", Some("tok"))]);
}
