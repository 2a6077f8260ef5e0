//! The offer `--deflate` sends and the server's answer checked against it
//! (RFC 7692 §7.1).

use super::{MAX_BITS, MIN_BITS};

/// What `--deflate` offers without a value: Chrome's offer, so a server
/// answers the generator as it answers a browser.
pub const DEFAULT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The parameters of one permessage-deflate offer or answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: named without a value (only in an offer).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What `--deflate` sends, parsed once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub header: String,
    pub params: Params,
}

impl Offer {
    /// Checks a `--deflate` value: one permessage-deflate offer with the
    /// parameters RFC 7692 defines, so a typo fails at start-up instead of
    /// being declined by every server.
    pub fn parse(value: &str) -> Result<Offer, String> {
        let params = parse_params(value, true)?;
        Ok(Offer {
            header: value.trim().to_owned(),
            params,
        })
    }
}

/// What the server agreed to: `Params` as the answer names them.
pub type Negotiated = Params;

/// Checks the server's `Sec-WebSocket-Extensions` answer against our offer
/// (RFC 7692 §7.1: the client fails the connection on any parameter it did
/// not allow). `Ok(None)`: the server declined (no header, or empty).
pub fn accept(offer: &Offer, answer: Option<&str>) -> Result<Option<Negotiated>, String> {
    let Some(answer) = answer.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    if answer.contains(',') {
        return Err(format!("more than one extension in {answer:?}"));
    }
    let got = parse_params(answer, false)?;
    let asked = offer.params;
    if got.client_max_window_bits.is_some() && asked.client_max_window_bits.is_none() {
        return Err("client_max_window_bits in the answer but not in the offer".into());
    }
    if let (Some(Some(got)), Some(Some(limit))) =
        (got.client_max_window_bits, asked.client_max_window_bits)
        && got > limit
    {
        return Err(format!(
            "client_max_window_bits={got} above the offered {limit}"
        ));
    }
    match (got.server_max_window_bits, asked.server_max_window_bits) {
        (None, Some(_)) => return Err("server_max_window_bits offered but not answered".into()),
        (Some(got), Some(limit)) if got > limit => {
            return Err(format!(
                "server_max_window_bits={got} above the offered {limit}"
            ));
        }
        _ => {}
    }
    if asked.server_no_context_takeover && !got.server_no_context_takeover {
        return Err("server_no_context_takeover offered but not answered".into());
    }
    Ok(Some(got))
}

/// `permessage-deflate; a; b=1`: the parameters, strictly (duplicates,
/// unknown names and out-of-range window bits are errors).
fn parse_params(value: &str, offer: bool) -> Result<Params, String> {
    let mut parts = value.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return Err(format!("{value:?} is not a permessage-deflate extension"));
    }
    let mut p = Params::default();
    let mut seen = Vec::new();
    for part in parts {
        let (name, v) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        if seen.contains(&name) {
            return Err(format!("{name} twice"));
        }
        seen.push(name);
        let bits = |v: Option<&str>| -> Result<u8, String> {
            v.and_then(|v| v.parse().ok())
                .filter(|b| (MIN_BITS..=MAX_BITS).contains(b))
                .ok_or_else(|| format!("{name} needs a value from 8 to 15"))
        };
        match (name, v) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", v) => p.server_max_window_bits = Some(bits(v)?),
            ("client_max_window_bits", None) if offer => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", v) => p.client_max_window_bits = Some(Some(bits(v)?)),
            _ => return Err(format!("unknown or malformed parameter {part:?}")),
        }
    }
    Ok(p)
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("permessage-deflate")?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(b) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={b}")?;
        }
        match self.client_max_window_bits {
            Some(Some(b)) => write!(f, "; client_max_window_bits={b}"),
            Some(None) => f.write_str("; client_max_window_bits"),
            None => Ok(()),
        }
    }
}
