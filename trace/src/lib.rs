//! Traces across the bus: one W3C trace context (`traceparent`) follows a
//! write from the client that sent it, through the store, its Raft entry
//! and apply, the change event, the controllers it wakes and the writes
//! they make, to the node agent that runs the pod. Every hop makes its
//! span a child of the context it received, so the spans of the whole path
//! share one trace id.
//!
//! Where the context travels:
//! - a request: the `traceparent` header (`kubus_bus::trace::inject`,
//!   `from_headers`);
//! - a Raft entry: the proposal carries it, and the changes the entry
//!   makes get the context of its `raft.apply` span
//!   (`kubus_storage::Store::propose_in`);
//! - a change event: `kubus_bus::protocol::ChangeEvent::traceparent`.
//!
//! The hops: `kubus.request` (a client) → `store.request` → `raft.propose`
//! → `raft.apply` → `store.publish` → `controller.reconcile` (its writes are
//! requests again) → `scheduler.bind` → `agent.pod_start`.
//!
//! Spans of this path use the target [`TARGET`] (made with
//! [`trace_span!`]): the binary sends them to an OTLP collector when
//! one is named and filters them out of its logs. With no collector
//! installed ([`set_on`] never called) every function here returns at once
//! and the spans are disabled: nothing is carried, nothing is recorded.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C field the context travels in (a header's name, too).
pub const TRACEPARENT: &str = "traceparent";

/// The target of every span of a write's path.
pub const TARGET: &str = "kubus::trace";

/// A span of a write's path (target [`TARGET`], level INFO): the same
/// arguments as `tracing::info_span!`, or `child_of: &span, name, …` for a
/// span made only inside a traced one (disabled when `span` is).
#[macro_export]
macro_rules! trace_span {
    (child_of: $parent:expr, $name:expr $(, $($field:tt)*)?) => {{
        let parent: &::tracing::Span = $parent;
        if parent.is_disabled() {
            ::tracing::Span::none()
        } else {
            ::tracing::info_span!(target: "kubus::trace", parent: parent, $name $(, $($field)*)?)
        }
    }};
    (parent: $parent:expr, $name:expr $(, $($field:tt)*)?) => {
        ::tracing::info_span!(target: "kubus::trace", parent: $parent, $name $(, $($field)*)?)
    };
    ($name:expr $(, $($field:tt)*)?) => {
        ::tracing::info_span!(target: "kubus::trace", $name $(, $($field)*)?)
    };
}

static ON: AtomicBool = AtomicBool::new(false);

/// Traces are exported from this process: carry contexts from now on.
pub fn set_on() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether traces are exported from this process.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The W3C `traceparent` of `span`; `None` when tracing is off or the span
/// is disabled.
pub fn traceparent(span: &Span) -> Option<String> {
    if !on() || span.is_disabled() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// The `traceparent` of the current span.
pub fn current() -> Option<String> {
    traceparent(&Span::current())
}

/// Make `span` (not yet entered) a child of the context `traceparent`
/// names, received from another process. A context that does not parse
/// leaves the span where it was.
pub fn adopt(span: &Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else {
        return;
    };
    if !on() || span.is_disabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Carrier(Some(tp.to_string())));
    // fails only when the span was entered already or no layer records it
    let _ = span.set_parent(cx);
}

/// Holds the one field the W3C propagator reads and writes.
#[derive(Default)]
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_context_is_carried_from_span_to_span() {
        set_on();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let span = trace_span!("received");
            adopt(&span, Some(sent));
            let tp = traceparent(&span).expect("a context");
            // the same trace, a span of its own, sampled
            assert!(
                tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{tp}"
            );
            assert!(!tp.contains("b7ad6b7169203331"), "{tp}");
            assert!(tp.ends_with("-01"), "{tp}");
            // its children carry it on
            let child = crate::trace_span!(child_of: &span, "child");
            let tp = traceparent(&child).expect("a child context");
            assert!(tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
            assert_eq!(span.in_scope(current), traceparent(&span));
        });
        // a disabled span carries nothing
        assert_eq!(traceparent(&Span::none()), None);
    }
}
