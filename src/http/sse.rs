//! `GET /.sse`: server-sent events, one a second, until the client leaves or
//! the server drains (SPEC §1.6).
//!
//! Each event is its own body frame, and hyper writes a frame as soon as it
//! is produced, so a proxy that buffers the stream shows up as events
//! arriving in bursts. A client that stops reading stops the stream from
//! being polled: at most one event is pending per client.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub const PERIOD: Duration = Duration::from_secs(1);

/// The event stream for one client.
pub struct EventStream {
    server: String,
    seq: u64,
    tick: Interval,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// The answer: the stream as its body (the caller makes it a [`super::body::Body`]).
pub fn answer(server: &HeaderValue, shutdown: &CancellationToken) -> Response<EventStream> {
    let mut tick = tokio::time::interval(PERIOD);
    // A client that fell behind gets the next event a period later, not a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = EventStream {
        server: String::from_utf8_lossy(server.as_bytes()).into_owned(),
        seq: 0,
        tick,
        stop: Box::pin(shutdown.clone().cancelled_owned()),
    };
    let mut res = Response::new(stream);
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.stop.as_mut().poll(cx).is_ready() {
            // Draining: end the response cleanly, so the client sees the
            // end of the stream rather than a reset.
            return Poll::Ready(None);
        }
        ready!(this.tick.poll_tick(cx));
        this.seq += 1;
        let event = event(&this.server, this.seq, SystemTime::now());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}

/// One event: `id` is the sequence number, `data` a JSON object.
fn event(server: &str, seq: u64, now: SystemTime) -> String {
    let data = serde_json::json!({
        "server": server,
        "seq": seq,
        "time": rfc3339(now),
    });
    format!("event: tick\nid: {seq}\ndata: {data}\n\n")
}

/// `2026-11-28T09:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`), so no date crate is needed for one timestamp.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_164_800_250);
        assert_eq!(rfc3339(t), "2024-02-29T00:00:00.250Z");
    }

    #[test]
    fn an_event_is_id_and_one_json_data_line() {
        let e = event("box-1", 7, UNIX_EPOCH);
        assert_eq!(
            e,
            "event: tick\nid: 7\ndata: {\"seq\":7,\"server\":\"box-1\",\"time\":\"1970-01-01T00:00:00.000Z\"}\n\n"
        );
    }
}
