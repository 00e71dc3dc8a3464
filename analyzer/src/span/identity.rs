//! The identity rules: which trace a span belongs to, its span id and its parent, from
//! its request's trace context and the related spans the linker found (its parent or
//! recorded caller).

use podtrace_model::{SpanId, TraceId};

use super::ids::IdParts;
use crate::context::{extract_fields, Extraction, Family, TraceContext};
use crate::exchange::Request;

/// A span's ids and what linking keeps about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) parent: Option<SpanId>,
    pub(super) flags: u32,
    pub(super) trace_state: String,
    pub(super) family: Option<Family>,
    pub(super) caller_recorded: bool,
    /// The trace id was invented by podtrace (no context on the wire for this request or
    /// any recorded ancestor) and may still be replaced by the one a service's tracer
    /// started (root adoption); the span waits until its trace is final.
    pub(super) invented: bool,
    /// The trace id under which the parent span was registered when this one was
    /// identified (differs from `trace_id` after an adoption; for the orphan count).
    pub(super) parent_trace: TraceId,
    /// The trace id under which this span is in the linker's id table (its trace id when
    /// it was identified; an adoption changes `trace_id` only).
    pub(super) registered: TraceId,
}

impl Identity {
    /// The trace id under which this span is registered in the linker's id table (its
    /// trace id when it was identified: adoption changes `trace_id`, not the table).
    pub(super) fn parent_key(&self) -> TraceId {
        self.registered
    }
}

/// The trace context of a request's headers (what [`Linker`](super::Linker) reads when it identifies
/// the exchange; callers may extract it ahead, off the serial path).
pub fn request_context(req: &Request) -> Extraction {
    extract_fields(&req.headers)
}

/// The flags of a span: the context's sampling decision, else the parent's flags, else
/// sampled.
pub(super) fn flags_of(ctx: Option<&TraceContext>, inherited: Option<u32>) -> u32 {
    match ctx.and_then(|c| c.sampled) {
        Some(true) => 1,
        Some(false) => 0,
        None => inherited.unwrap_or(1),
    }
}

/// The identity of a CLIENT exchange with its request's context `ctx` (if any) and its
/// parent, the SERVER span of its process it was sent for (if any).
pub(super) fn client_identity(
    ex: &IdParts,
    ctx: Option<TraceContext>,
    parent: Option<Identity>,
) -> Identity {
    match ctx {
        Some(ctx) => {
            let same_trace = parent.as_ref().filter(|p| p.trace_id == ctx.trace_id);
            // A header forwarded unchanged from the incoming request names the caller's
            // span, not one this process created: derive an id instead.
            let passed_through = same_trace.is_some_and(|p| p.parent == ctx.parent_id);
            Identity {
                trace_id: ctx.trace_id,
                span_id: match ctx.parent_id {
                    Some(id) if !passed_through => id,
                    _ => ex.span_id(&ctx.trace_id, 0),
                },
                parent: same_trace.map(|p| p.span_id),
                flags: flags_of(Some(&ctx), same_trace.map(|p| p.flags)),
                trace_state: ctx.trace_state,
                family: Some(ctx.family),
                caller_recorded: false,
                invented: false,
                parent_trace: same_trace.map(|p| p.parent_key()).unwrap_or(ctx.trace_id),
                registered: ctx.trace_id,
            }
        }
        None => match parent {
            Some(p) => Identity {
                trace_id: p.trace_id,
                span_id: ex.span_id(&p.trace_id, 0),
                parent: Some(p.span_id),
                flags: p.flags,
                parent_trace: p.parent_key(),
                registered: p.trace_id,
                trace_state: p.trace_state,
                family: None,
                caller_recorded: false,
                invented: p.invented,
            },
            None => root_identity(ex),
        },
    }
}

/// The identity of a SERVER exchange with its request's context `ctx` (if any) and its
/// recorded caller, the CLIENT side of the same exchange (if any).
pub(super) fn server_identity(
    ex: &IdParts,
    ctx: Option<TraceContext>,
    caller: Option<Identity>,
) -> Identity {
    let caller_recorded = caller.is_some();
    match ctx {
        Some(ctx) => {
            let caller_same = caller.as_ref().filter(|c| c.trace_id == ctx.trace_id);
            Identity {
                trace_id: ctx.trace_id,
                span_id: ex.span_id(&ctx.trace_id, 0),
                // The recorded caller is the parent; its id differs from the header's
                // only when it forwarded an incoming header unchanged.
                parent: caller_same.map(|c| c.span_id).or(ctx.parent_id),
                flags: flags_of(Some(&ctx), caller_same.map(|c| c.flags)),
                trace_state: ctx.trace_state,
                family: Some(ctx.family),
                caller_recorded,
                invented: false,
                parent_trace: caller_same.map(|c| c.parent_key()).unwrap_or(ctx.trace_id),
                registered: ctx.trace_id,
            }
        }
        None => match caller {
            Some(c) => Identity {
                trace_id: c.trace_id,
                span_id: ex.span_id(&c.trace_id, 0),
                parent: Some(c.span_id),
                flags: c.flags,
                parent_trace: c.parent_key(),
                registered: c.trace_id,
                trace_state: c.trace_state,
                family: None,
                caller_recorded,
                invented: c.invented,
            },
            None => root_identity(ex),
        },
    }
}

/// The identity of the first span of a trace podtrace invents.
pub(super) fn root_identity(ex: &IdParts) -> Identity {
    let trace_id = ex.trace_id();
    Identity {
        trace_id,
        span_id: ex.span_id(&trace_id, 0),
        parent: None,
        flags: 1,
        trace_state: String::new(),
        family: None,
        caller_recorded: false,
        invented: true,
        parent_trace: trace_id,
        registered: trace_id,
    }
}

#[cfg(test)]
mod tests {
    use podtrace_model::SpanKind;

    use super::*;
    use crate::span::ids::tests::parts;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";

    fn ctx(sampled: Option<bool>) -> TraceContext {
        TraceContext {
            family: Family::W3c,
            trace_id: TraceId::from_hex(TRACE).expect("trace"),
            parent_id: Some(SpanId::from_hex(CALLER).expect("span")),
            sampled,
            trace_state: "k=v".into(),
        }
    }

    #[test]
    fn flags_come_from_the_context_then_the_parent() {
        let (yes, no, unknown) = (ctx(Some(true)), ctx(Some(false)), ctx(None));
        assert_eq!(flags_of(Some(&yes), Some(0)), 1);
        assert_eq!(flags_of(Some(&no), Some(1)), 0);
        assert_eq!(flags_of(Some(&unknown), Some(0)), 0);
        assert_eq!(flags_of(None, None), 1);
    }

    #[test]
    fn client_takes_the_header_span_id_server_takes_it_as_parent() {
        let client = client_identity(&parts(SpanKind::Client), Some(ctx(None)), None);
        assert_eq!(client.trace_id.to_string(), TRACE);
        assert_eq!(client.span_id.to_string(), CALLER);
        assert_eq!(client.parent, None);
        assert_eq!((client.flags, client.invented), (1, false));
        assert_eq!(client.trace_state, "k=v");
        let p = parts(SpanKind::Server);
        let server = server_identity(&p, Some(ctx(Some(false))), None);
        assert_eq!(server.span_id, p.span_id(&server.trace_id, 0));
        assert_eq!(server.parent.map(|s| s.to_string()), Some(CALLER.into()));
        assert_eq!((server.flags, server.caller_recorded), (0, false));
    }

    /// A header forwarded unchanged names the caller's span: the client gets its own id.
    #[test]
    fn passed_through_header_gets_a_derived_id() {
        let server = server_identity(&parts(SpanKind::Server), Some(ctx(None)), None);
        let p = parts(SpanKind::Client);
        let client = client_identity(&p, Some(ctx(None)), Some(server.clone()));
        assert_eq!(client.span_id, p.span_id(&client.trace_id, 0));
        assert_eq!(client.parent, Some(server.span_id));
    }

    #[test]
    fn without_context_spans_join_their_relative_or_start_a_trace() {
        let root = root_identity(&parts(SpanKind::Server));
        assert!(root.invented);
        assert_eq!((root.parent, root.flags), (None, 1));
        assert_eq!(root.registered, root.trace_id);
        let p = parts(SpanKind::Client);
        let child = client_identity(&p, None, Some(root.clone()));
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent, Some(root.span_id));
        assert!(child.invented, "an invented trace stays adoptable");
        let callee = server_identity(&parts(SpanKind::Server), None, Some(child.clone()));
        assert_eq!(callee.parent, Some(child.span_id));
        assert!(callee.caller_recorded);
        assert_eq!(server_identity(&parts(SpanKind::Server), None, None), root);
    }
}
