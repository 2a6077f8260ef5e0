//! permessage-deflate negotiation (RFC 7692 §5, §7): read the client's
//! `Sec-WebSocket-Extensions` offers, accept the first one the
//! [`DeflatePolicy`] allows, and say what to answer.
//!
//! A bad offer (unknown or repeated parameter, missing or out-of-range value,
//! broken syntax) is declined on its own: the next offer is tried, and with
//! none left the connection simply runs uncompressed (RFC 7692 §5).

use std::borrow::Cow;
use std::fmt;

use super::policy::DeflatePolicy;

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// What both sides agreed to for one connection: the parameters of the
/// accepted offer as the server answered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's window, when the response names one (absent: 15).
    pub server_max_window_bits: Option<u8>,
    /// The client's window, when the response names one (absent: 15).
    pub client_max_window_bits: Option<u8>,
}

impl Params {
    /// The window the server may compress with (RFC 7692 §7.1.2.1).
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// The window the client may compress with, so the one to inflate with.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(15)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response_header(&self) -> String {
        self.to_string()
    }
}

/// The response header's value: the extension name and every parameter the
/// server agreed to, in the RFC's order.
impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        if let Some(bits) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={bits}")?;
        }
        Ok(())
    }
}

/// Picks the first permessage-deflate offer the policy accepts, across every
/// `Sec-WebSocket-Extensions` line in order. `None`: answer without the
/// header and run uncompressed.
pub fn negotiate<'a, I>(header_values: I, policy: &DeflatePolicy) -> Option<Params>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    if !policy.enabled {
        return None;
    }
    header_values
        .into_iter()
        // A line that is not even UTF-8 holds no offer we could accept.
        .filter_map(|line| std::str::from_utf8(line).ok())
        .flat_map(split_list)
        .filter_map(parse_extension)
        .filter(|ext| ext.name.eq_ignore_ascii_case(NAME))
        .find_map(|ext| accept(&ext.params, policy))
}

/// The answer to one offer, or `None` to decline it.
fn accept(params: &[Param<'_>], policy: &DeflatePolicy) -> Option<Params> {
    let offer = Offer::read(params)?;
    let server_bits = match offer.server_max_window_bits {
        Some(bits) => Some(bits.min(policy.server_max_window_bits)),
        // RFC 7692 §7.1.2.1 lets the server name its window unasked.
        None => Some(policy.server_max_window_bits).filter(|&bits| bits < 15),
    };
    // RFC 7692 §7.1.2.2: the response may bound the client's window only if
    // the offer carries `client_max_window_bits`, with or without a value.
    let client_bits = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = offered.unwrap_or(15).min(policy.client_max_window_bits);
            Some(bits).filter(|&b| b < 15 || offered.is_some())
        }
        None => None,
    };
    Some(Params {
        server_no_context_takeover: offer.server_no_context_takeover
            || policy.server_no_context_takeover,
        // Taking the client's offer costs nothing and lets the inflater go
        // back to the pool between messages.
        client_no_context_takeover: offer.client_no_context_takeover
            || policy.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// One offer's parameters, each seen at most once.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// `None` for an offer RFC 7692 §7 says to decline.
    fn read(params: &[Param<'_>]) -> Option<Offer> {
        let mut offer = Offer::default();
        let mut seen = [false; 4];
        for param in params {
            let name = param.name.to_ascii_lowercase();
            let value = param.value.as_deref();
            let slot = match name.as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return None,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            match slot {
                0 if value.is_none() => offer.server_no_context_takeover = true,
                1 if value.is_none() => offer.client_no_context_takeover = true,
                2 => offer.server_max_window_bits = Some(window_bits(value?)?),
                3 => {
                    offer.client_max_window_bits = Some(match value {
                        Some(v) => Some(window_bits(v)?),
                        None => None,
                    })
                }
                _ => return None,
            }
        }
        Some(offer)
    }
}

/// RFC 7692 §7.1.2: a decimal 8..=15 without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// One element of the header's list: a name and its parameters.
#[derive(Debug, PartialEq, Eq)]
struct Extension<'a> {
    name: &'a str,
    params: Vec<Param<'a>>,
}

/// `name` or `name=value`; a quoted value arrives unquoted.
#[derive(Debug, PartialEq, Eq)]
struct Param<'a> {
    name: &'a str,
    value: Option<Cow<'a, str>>,
}

/// Splits a header line at the commas outside quoted strings, dropping the
/// empty elements the `#rule` allows (RFC 9110 §5.6.1).
fn split_list(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in s.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
    .filter(|element| !element.trim_matches(is_ows).is_empty())
}

/// RFC 6455 §9.1: `token *( OWS ";" OWS token [ "=" (token | quoted-string) ] )`.
/// `None` for anything else, so that one offer, not the header, is declined.
fn parse_extension(element: &str) -> Option<Extension<'_>> {
    let mut parts = Cursor(element.trim_matches(is_ows));
    let name = parts.token()?;
    let mut params = Vec::new();
    while !parts.0.is_empty() {
        parts.skip_ows();
        parts.eat(b';')?;
        parts.skip_ows();
        let name = parts.token()?;
        parts.skip_ows();
        let value = if parts.eat(b'=').is_some() {
            parts.skip_ows();
            let value = if parts.0.starts_with('"') {
                let v = parts.quoted()?;
                // RFC 6455 §9.1: an unquoted value must still be a token.
                Cursor(&v).token().filter(|t| t.len() == v.len())?;
                v
            } else {
                Cow::Borrowed(parts.token()?)
            };
            parts.skip_ows();
            Some(value)
        } else {
            None
        };
        params.push(Param { name, value });
    }
    Some(Extension { name, params })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What is left of one list element.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn skip_ows(&mut self) {
        self.0 = self.0.trim_start_matches(is_ows);
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.0 = self.0.strip_prefix(char::from(b))?;
        Some(())
    }

    fn token(&mut self) -> Option<&'a str> {
        let end = self
            .0
            .bytes()
            .position(|b| !is_tchar(b))
            .unwrap_or(self.0.len());
        let (token, rest) = self.0.split_at(end);
        self.0 = rest;
        (!token.is_empty()).then_some(token)
    }

    /// A quoted-string, unescaped; borrowed when it has no escapes.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        let body = self.0.strip_prefix('"')?;
        let mut owned: Option<String> = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.0 = &body[i + 1..];
                    return Some(owned.map_or(Cow::Borrowed(&body[..i]), Cow::Owned));
                }
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    owned
                        .get_or_insert_with(|| body[..i].to_owned())
                        .push(escaped);
                }
                c => {
                    if let Some(s) = owned.as_mut() {
                        s.push(c);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "offer_tests.rs"]
mod tests;
