//! The enqueuer's trace carried into a job's runs (feature `opentelemetry`).
//!
//! At enqueue, [`NewJob::new`](crate::NewJob::new) records the current `tracing`
//! span's OpenTelemetry context as a W3C `traceparent`; each run's span is then
//! parented to it, so with a `tracing-opentelemetry` layer installed the runs show
//! up in the trace of the request or task that enqueued the job, however much later
//! and on whichever machine they run. Without the feature both ends are no-ops.

/// The current span's trace context as a `traceparent`, when it belongs to a trace.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Without the `opentelemetry` feature there is no trace to record.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn current_traceparent() -> Option<String> {
    None
}

/// Parents `span` (a run's) to the trace named by `traceparent`, if it parses.
#[cfg(feature = "opentelemetry")]
pub(crate) fn join_trace(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(parent) = traceparent.and_then(parse) else {
        return;
    };
    let (trace, span_id, flags) = parent;
    let (Ok(trace), Ok(span_id)) = (TraceId::from_hex(trace), SpanId::from_hex(span_id)) else {
        return;
    };
    let remote = SpanContext::new(
        trace,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    if remote.is_valid() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Without the `opentelemetry` feature the run's span stands alone.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn join_trace(_span: &tracing::Span, _traceparent: Option<&str>) {}

/// `00-<32 hex>-<16 hex>-<2 hex>`: (trace id, span id, flags).
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
fn parse(traceparent: &str) -> Option<(&str, &str, u8)> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    Some((trace, span, u8::from_str_radix(flags, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn traceparents_parse_or_are_ignored() {
        assert_eq!(
            parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1))
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
