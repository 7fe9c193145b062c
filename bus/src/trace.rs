//! Trace contexts in bus headers: the current span's context goes with a
//! request as `traceparent`, and the receiver makes its span a child of it.
//! Everything else of traces is `kubus_trace`'s (re-exported here).

use async_nats::HeaderMap;

pub use kubus_trace::*;

use crate::subject::HEADER_TRACEPARENT;

/// Add the current span's context to a request's headers.
pub fn inject(headers: &mut Option<HeaderMap>) {
    if let Some(tp) = current() {
        headers
            .get_or_insert_with(HeaderMap::new)
            .insert(HEADER_TRACEPARENT, tp.as_str());
    }
}

/// The context a request carried, if any.
pub fn from_headers(headers: Option<&HeaderMap>) -> Option<String> {
    if !on() {
        return None;
    }
    headers
        .and_then(|h| h.get(HEADER_TRACEPARENT))
        .map(|v| v.as_str().to_string())
}
