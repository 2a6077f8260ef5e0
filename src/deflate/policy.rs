//! `--deflate off|on|POLICY`: what the server agrees to when a client offers
//! permessage-deflate.
//!
//! # Syntax
//!
//! - `off`: decline every offer; connections run uncompressed.
//! - `on` (the default): the same as
//!   `server_no_context_takeover,client_no_context_takeover`. Both directions
//!   reset their LZ77 window after every message, so no connection keeps a
//!   zlib context between messages: contexts come from a per-thread pool while
//!   a message is in flight (see the [`deflate`](super) module docs for the
//!   memory figures behind this default). Compression suffers only across
//!   messages (a later message cannot refer back to an earlier one).
//! - A comma-separated list, named after the RFC 7692 parameters it bounds,
//!   starting from the RFC's own defaults (context takeover both ways, 15-bit
//!   windows):
//!   - `server_no_context_takeover`, `client_no_context_takeover`: require
//!     the reset in that direction, whatever the client offers;
//!   - `server_max_window_bits=N`, `client_max_window_bits=N` (8..=15): the
//!     largest window each side may use. The client's bound can only be
//!     imposed on a client that offers `client_max_window_bits`; others are
//!     accepted with the 15-bit window the RFC then implies;
//!   - `level=N` (0..=9): zlib compression level of what the server sends;
//!   - `mem_level=N` (1..=9): zlib memLevel of the server's compressor (its
//!     buffer sizes; see the module docs);
//!   - `takeover`: no item at all, for a policy with every RFC default.
//!
//! Examples: `--deflate takeover` (best ratio, ~300 KiB per connection),
//! `--deflate client_no_context_takeover,server_max_window_bits=10`.

use std::fmt;
use std::str::FromStr;

/// The server's side of the permessage-deflate negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Whether offers are considered at all.
    pub enabled: bool,
    /// Reset the server's compressor after every message it sends.
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with (8..=15).
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client may compress with (8..=15).
    pub client_max_window_bits: u8,
    /// zlib level for what the server sends (0..=9).
    pub level: u8,
    /// zlib memLevel for the server's compressor (1..=9).
    pub mem_level: u8,
}

/// Level 2 (measured in the module docs): about 1.7 times level 1's time on
/// large text for 30 % fewer bytes, and unlike zlib-rs's level 1 it stores
/// incompressible data instead of growing it by 5.5 % (and is faster on it).
const DEFAULT_LEVEL: u8 = 2;
/// zlib's own default; it sizes the literal buffers (see the module docs).
const DEFAULT_MEM_LEVEL: u8 = 8;

impl DeflatePolicy {
    /// Decline every offer.
    pub const OFF: DeflatePolicy = DeflatePolicy {
        enabled: false,
        ..DeflatePolicy::TAKEOVER
    };

    /// No context takeover either way: nothing is kept between messages.
    pub const ON: DeflatePolicy = DeflatePolicy {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflatePolicy::TAKEOVER
    };

    /// Everything RFC 7692 allows by default: both windows kept, 15 bits.
    pub const TAKEOVER: DeflatePolicy = DeflatePolicy {
        enabled: true,
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        level: DEFAULT_LEVEL,
        mem_level: DEFAULT_MEM_LEVEL,
    };
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        DeflatePolicy::ON
    }
}

/// Why a `--deflate` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "unknown --deflate item `{0}` (expected off, on, takeover or RFC 7692 parameter names)"
    )]
    Unknown(String),
    #[error("`{0}` needs a value in {1}..={2}")]
    OutOfRange(String, u8, u8),
    #[error("`{0}` takes no value")]
    UnexpectedValue(String),
    #[error("`{0}` can only be used alone")]
    NotAlone(String),
}

impl FromStr for DeflatePolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let items: Vec<&str> = s.split(',').map(str::trim).collect();
        let alone = |word: &str| -> Result<(), PolicyError> {
            if items.len() == 1 {
                Ok(())
            } else {
                Err(PolicyError::NotAlone(word.to_owned()))
            }
        };
        let mut policy = DeflatePolicy::TAKEOVER;
        for item in &items {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (*item, None),
            };
            let flag = |field: &mut bool| match value {
                None => {
                    *field = true;
                    Ok(())
                }
                Some(_) => Err(PolicyError::UnexpectedValue(name.to_owned())),
            };
            let number = |lo: u8, hi: u8| {
                value
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| PolicyError::OutOfRange(name.to_owned(), lo, hi))
            };
            match name.to_ascii_lowercase().as_str() {
                "off" if value.is_none() => {
                    alone(name)?;
                    return Ok(DeflatePolicy::OFF);
                }
                "on" if value.is_none() => {
                    alone(name)?;
                    return Ok(DeflatePolicy::ON);
                }
                "takeover" if value.is_none() => alone(name)?,
                "server_no_context_takeover" => flag(&mut policy.server_no_context_takeover)?,
                "client_no_context_takeover" => flag(&mut policy.client_no_context_takeover)?,
                "server_max_window_bits" => policy.server_max_window_bits = number(8, 15)?,
                "client_max_window_bits" => policy.client_max_window_bits = number(8, 15)?,
                "level" => policy.level = number(0, 9)?,
                "mem_level" => policy.mem_level = number(1, 9)?,
                _ => return Err(PolicyError::Unknown((*item).to_owned())),
            }
        }
        Ok(policy)
    }
}

/// Writes the policy back in the syntax [`FromStr`] reads, shortest form first.
impl fmt::Display for DeflatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            return f.write_str("off");
        }
        if *self == DeflatePolicy::ON {
            return f.write_str("on");
        }
        let mut items: Vec<String> = Vec::new();
        if self.server_no_context_takeover {
            items.push("server_no_context_takeover".into());
        }
        if self.client_no_context_takeover {
            items.push("client_no_context_takeover".into());
        }
        let base = DeflatePolicy::TAKEOVER;
        let numbers = [
            (
                "server_max_window_bits",
                self.server_max_window_bits,
                base.server_max_window_bits,
            ),
            (
                "client_max_window_bits",
                self.client_max_window_bits,
                base.client_max_window_bits,
            ),
            ("level", self.level, base.level),
            ("mem_level", self.mem_level, base.mem_level),
        ];
        for (name, value, default) in numbers {
            if value != default {
                items.push(format!("{name}={value}"));
            }
        }
        if items.is_empty() {
            return f.write_str("takeover");
        }
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_and_takeover_are_keywords() {
        assert_eq!("on".parse(), Ok(DeflatePolicy::ON));
        assert_eq!("OFF".parse(), Ok(DeflatePolicy::OFF));
        assert_eq!("takeover".parse(), Ok(DeflatePolicy::TAKEOVER));
        assert_eq!(DeflatePolicy::default(), DeflatePolicy::ON);
    }

    #[test]
    fn lists_set_each_field() {
        let p: DeflatePolicy =
            "client_no_context_takeover, server_max_window_bits=10,client_max_window_bits=9,level=6,mem_level=4"
                .parse()
                .unwrap();
        assert!(p.enabled && p.client_no_context_takeover && !p.server_no_context_takeover);
        assert_eq!(
            (
                p.server_max_window_bits,
                p.client_max_window_bits,
                p.level,
                p.mem_level
            ),
            (10, 9, 6, 4)
        );
    }

    #[test]
    fn bad_items_are_refused() {
        for bad in [
            "",
            "yes",
            "server_max_window_bits=16",
            "server_max_window_bits=7",
            "server_max_window_bits",
            "client_max_window_bits=x",
            "level=10",
            "mem_level=0",
            "server_no_context_takeover=1",
            "on,level=1",
            "off,on",
        ] {
            assert!(bad.parse::<DeflatePolicy>().is_err(), "{bad:?} accepted");
        }
    }

    /// The flag the server's Config is meant to carry: clap takes the type
    /// through its `FromStr`, and the default through `Display`.
    #[test]
    fn clap_parses_the_flag() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[arg(long, default_value_t = DeflatePolicy::default())]
            deflate: DeflatePolicy,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.deflate);
        assert_eq!(parse(&["x"]).unwrap(), DeflatePolicy::ON);
        assert_eq!(
            parse(&["x", "--deflate", "off"]).unwrap(),
            DeflatePolicy::OFF
        );
        let p = parse(&["x", "--deflate", "server_max_window_bits=10"]).unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        let err = parse(&["x", "--deflate", "window=10"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown --deflate item"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "on",
            "off",
            "takeover",
            "server_no_context_takeover",
            "client_no_context_takeover,server_max_window_bits=9,level=9,mem_level=1",
        ] {
            let p: DeflatePolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p.to_string().parse(), Ok(p));
        }
    }
}
