//! Logging and tracing set-up shared by every sidecar.
//!
//! Logs go to stderr through `tracing`, human-readable unless `REDIS_HA_LOG_FORMAT=json`;
//! the level comes from `RUST_LOG` (default `info`). Spans are exported with OpenTelemetry
//! OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise nothing is exported
//! and nothing complains. Trace context crosses gRPC calls as W3C `traceparent` metadata,
//! and crosses the topology stream (one message per version, no per-message metadata) as
//! `Topology.trace_parent` ([`current_trace_parent`], [`adopt_trace_parent`]).
//!
//! While spans are exported, every log line written inside a span carries that span's
//! `trace_id`, so a log line leads to its trace and back.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal as _;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops the span exporter when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("telemetry: span exporter shutdown: {e}");
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// True when logs should be JSON (`REDIS_HA_LOG_FORMAT=json`).
fn json_logs() -> bool {
    std::env::var("REDIS_HA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

/// Sets up logging and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OTLP span export under
/// `service_name`. Safe to call more than once in a process (tests run several sidecars
/// in one process): only the first call installs anything.
pub fn init(service_name: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|source| TelemetryError::Exporter {
                    endpoint: endpoint.clone(),
                    source,
                })?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name(service_name).build())
                    .build(),
            )
        }
        _ => None,
    };

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in container logs.
    let ansi = std::io::stderr().is_terminal();
    let fmt_layer = log_layer(json_logs(), ansi, std::io::stderr);
    let otel_layer = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer(service_name))
    });
    // A second init in the same process keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();

    Ok(TelemetryGuard { provider })
}

/// The layer that writes log lines to `writer`: JSON (with the current span) or text (in
/// colour when `ansi`), each line inside a span carrying its trace id.
fn log_layer<S, W>(json: bool, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .event_format(WithTraceId::json(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .event_format(WithTraceId::text(
                tracing_subscriber::fmt::format().with_ansi(ansi),
            ))
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Puts the current span's trace context into outgoing gRPC metadata (`traceparent`).
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// Makes `span` a child of the trace context found in incoming gRPC metadata, if any.
pub fn adopt_trace_context(metadata: &tonic::metadata::MetadataMap, span: &tracing::Span) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)));
    span.set_parent(cx);
}

/// The W3C `traceparent` of the current span (`00-<trace id>-<span id>-<flags>`), or an
/// empty string when no trace is recorded (no exporter configured).
pub fn current_trace_parent() -> String {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// Makes `span` a child of the span a W3C `traceparent` names (as carried in
/// `Topology.trace_parent`). An empty or malformed value leaves `span` as it is.
pub fn adopt_trace_parent(trace_parent: &str, span: &tracing::Span) {
    let trace_parent = trace_parent.trim();
    if trace_parent.is_empty() {
        return;
    }
    let carrier: HashMap<String, String> =
        HashMap::from([(TRACEPARENT.to_owned(), trace_parent.to_owned())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if cx.span().span_context().is_valid() {
        span.set_parent(cx);
    }
}

const TRACEPARENT: &str = "traceparent";

/// Wraps a log line format and adds the OpenTelemetry trace id of the span the event is in:
/// ` trace_id=<hex>` at the end of a text line, a `"trace_id"` member in a JSON line. Lines
/// outside any span, or when no trace is recorded, are written unchanged.
pub struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceId<F> {
    /// For a text format: the id goes at the end of the line.
    pub fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    /// For a JSON format: the id becomes the first member of the object.
    pub fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

/// The trace the event's innermost span belongs to, if it records one.
fn event_trace_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<TraceId>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let span = ctx.event_scope()?.next()?;
    let extensions = span.extensions();
    let data = extensions.get::<OtelData>()?;
    // A child (or a span given a remote parent) has its trace in the parent context; a
    // root span has the id it was given when it started.
    let parent = data.parent_cx.span();
    let id = if parent.span_context().is_valid() {
        parent.span_context().trace_id()
    } else {
        data.builder.trace_id?
    };
    (id != TraceId::INVALID).then_some(id)
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let Some(trace_id) = event_trace_id(ctx) else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Formatted apart, then completed (the inner format writes the whole line at once).
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            if let Some(rest) = line.strip_prefix('{') {
                let sep = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                return write!(writer, "{{\"trace_id\":\"{trace_id}\"{sep}{rest}");
            }
        } else if let Some(body) = line.strip_suffix('\n') {
            return writeln!(writer, "{body} trace_id={trace_id}");
        }
        writer.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Runs `f` under a subscriber like `init`'s (spans recorded by an SDK provider without
    /// exporter), logging into a buffer; returns the lines.
    fn logged(json: bool, f: impl FnOnce()) -> Vec<String> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let buf = Buf::default();
        let fmt_layer = log_layer(json, false, buf.clone());
        let subscriber = tracing_subscriber::registry()
            .with(fmt_layer)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        buf.lines()
    }

    fn trace_id_of(line: &str) -> Option<String> {
        let i = line.find("trace_id")?;
        Some(
            line[i + "trace_id".len()..]
                .trim_start_matches(['=', '"', ':'])
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect(),
        )
    }

    #[test]
    fn text_lines_in_a_span_carry_its_trace_id() {
        let mut parent = String::new();
        let lines = logged(false, || {
            tracing::info!("outside");
            let span = tracing::info_span!("outer", version = 7);
            let _g = span.enter();
            parent = current_trace_parent();
            tracing::info!("inside");
            tracing::info_span!("inner").in_scope(|| tracing::warn!("deeper"));
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(trace_id_of(&lines[0]).is_none(), "{}", lines[0]);
        let id = trace_id_of(&lines[1]).unwrap();
        assert_eq!(id.len(), 32, "{}", lines[1]);
        assert!(
            lines[1].ends_with(&format!("inside trace_id={id}")),
            "{}",
            lines[1]
        );
        assert_eq!(trace_id_of(&lines[2]).as_deref(), Some(id.as_str()));
        // The traceparent names the same trace.
        assert!(parent.starts_with(&format!("00-{id}-")), "{parent}");
    }

    #[test]
    fn json_lines_get_a_trace_id_member() {
        let lines = logged(true, || {
            tracing::info!("outside");
            tracing::info_span!("outer").in_scope(|| tracing::info!(n = 1, "inside"));
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
        assert!(lines[1].starts_with("{\"trace_id\":\""), "{}", lines[1]);
        assert!(lines[1].contains("\"message\":\"inside\""), "{}", lines[1]);
        assert!(lines[1].ends_with('}'), "{}", lines[1]);
    }

    #[test]
    fn a_topology_trace_parent_makes_the_span_a_child() {
        let mut sent = String::new();
        let mut adopted = String::new();
        let lines = logged(false, || {
            tracing::info_span!("publish").in_scope(|| sent = current_trace_parent());
            let apply = tracing::info_span!("apply");
            adopt_trace_parent(&sent, &apply);
            apply.in_scope(|| {
                adopted = current_trace_parent();
                tracing::info!("applied");
            });
            // Junk or nothing leaves a span alone.
            let lone = tracing::info_span!("lone");
            adopt_trace_parent("", &lone);
            adopt_trace_parent("not-a-traceparent", &lone);
            lone.in_scope(|| tracing::info!("alone"));
        });
        let sent_trace = sent.split('-').nth(1).unwrap().to_owned();
        assert_eq!(adopted.split('-').nth(1), Some(sent_trace.as_str()));
        assert_ne!(
            adopted.split('-').nth(2),
            sent.split('-').nth(2),
            "a new span id"
        );
        assert_eq!(trace_id_of(&lines[0]).as_deref(), Some(sent_trace.as_str()));
        let lone = trace_id_of(&lines[1]).unwrap();
        assert_ne!(lone, sent_trace);
    }

    #[test]
    fn without_a_recorded_trace_nothing_is_added() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(WithTraceId::text(tracing_subscriber::fmt::format()))
                .with_ansi(false)
                .with_writer(buf.clone()),
        );
        let mut parent = "unset".to_owned();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("s").in_scope(|| {
                parent = current_trace_parent();
                tracing::info!("hello");
            });
        });
        assert_eq!(parent, "");
        let lines = buf.lines();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
    }
}
