//! Running requests: one request (lookup, scope, deadline, template, retries, panics), and a
//! batch (in order, one deadline, abort and template rules).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kaiju_core::Value;
use kaiju_streams::Headers;
use tokio::time::Instant;
use tracing::Instrument;

use crate::context::{Parsed, RequestContext};
use crate::error::RpcError;
use crate::module::{Failure, MethodFuture};
use crate::request::{Call, Outcome, Response, Via};
use crate::scope::Scope;
use crate::state::Inner;
use crate::template::{self, Budget};

/// One body being run.
pub(crate) struct Run<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) parsed: &'a Parsed,
    pub(crate) headers: &'a Headers,
    pub(crate) scope: Scope,
    pub(crate) via: Via,
}

/// Polls a method future, turning a panic into an error (the server keeps running, and the
/// caller gets an internal error instead of silence).
struct CatchUnwind(MethodFuture);

impl Future for CatchUnwind {
    type Output = Option<Result<Value, Failure>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// kaiju's retry pause: 0.5 s, growing ×1.1, at most 10 s.
fn pause(attempt: u32) -> Duration {
    Duration::from_secs_f64((0.5 * 1.1_f64.powi(attempt as i32)).min(10.0))
}

/// Keys whose values request logs never show (kaiju deleted them from the caller's params
/// while logging, D26; this redacts a copy).
const SECRETS: [&str; 5] = ["password", "token", "access", "refresh", "secret"];

fn redacted(params: &Value) -> Value {
    match params {
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| match k.as_str() {
                    Some(name) if SECRETS.contains(&name) => (k.clone(), Value::Str("***".into())),
                    _ => (k.clone(), redacted(v)),
                })
                .collect(),
        ),
        // A list of records (`{"users": [{"password": ...}]}`) is looked into as well.
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

impl Run<'_> {
    /// The method name a request's metrics are labelled with: only a method the caller may
    /// see. A method above the caller's scope is `unknown` in the metrics as it is "method
    /// not found" in the answer, so that `/metrics` does not tell which exist.
    fn label<'c>(&self, call: &'c Call) -> Option<&'c str> {
        let name = call.method.as_deref().ok()?;
        let method = self.inner.methods.get(name)?;
        self.inner.visible(self.scope, method).then_some(name)
    }

    /// Runs one request. `earlier` holds the results of the batch's earlier requests when the
    /// batch is in template mode.
    pub(crate) async fn one(
        &self,
        call: Call,
        earlier: Option<(&[Option<&Value>], &mut Budget)>,
    ) -> Response {
        let timer = (self.inner.metrics).start(self.label(&call), self.via);
        // The request's span: every line its method logs, and the access line, carry the
        // method, the transport, the correlation id and the caller's W3C trace context.
        let trace = self.parsed.trace;
        let span = tracing::info_span!(
            "rpc",
            method = %kaiju_core::shortened(call.method.as_deref().unwrap_or("")),
            via = %self.via,
            correlation_id = %kaiju_core::shortened(&self.parsed.correlation_id),
            trace_id = trace.map(|t| tracing::field::display(t.trace_id())),
            parent_id = trace.map(|t| tracing::field::display(t.parent_id())),
        );
        let mut ran = false;
        let response = self
            .execute(call, earlier, &mut ran)
            .instrument(span.clone())
            .await;
        self.inner.counters.count(response.outcome);
        let took = timer.finish(&response);
        span.in_scope(|| self.log(&response, took, ran));
        response
    }

    /// The request's one line: info for a result or a client error, error for a failure (the
    /// levels they always had). With `access_log` off, only what was logged before it existed
    /// is: the errors of methods that ran.
    fn log(&self, response: &Response, took: Duration, ran: bool) {
        let access = self.inner.settings.access_log;
        let outcome = response.outcome;
        let duration_ms = took.as_secs_f64() * 1e3;
        match &response.result {
            Ok(_) if access => tracing::info!(?outcome, duration_ms, "done"),
            Ok(_) => {}
            Err(e) if matches!(outcome, Outcome::Failed | Outcome::TimedOut) => {
                tracing::error!(?outcome, duration_ms, error = %e, detail = e.detail(), "internal error")
            }
            Err(e)
                if (access || ran)
                    && matches!(
                        e.code(),
                        crate::codes::INVALID_PARAMS | crate::codes::MODEL_VALIDATION
                    ) =>
            {
                // The decoder's message quotes the value that did not fit, which may be a
                // secret (`{"password": 81726354}` for a string field): only the code is logged.
                tracing::info!(
                    ?outcome,
                    duration_ms,
                    error_code = e.code(),
                    "client error: invalid params (not logged: they may hold secrets)"
                )
            }
            Err(e) if access || ran => {
                tracing::info!(?outcome, duration_ms, error = %e, "client error")
            }
            Err(_) => {}
        }
    }

    /// The access line of a batch request that was not run (aborted or expired after an
    /// earlier one).
    fn log_skipped(&self, outcome: Outcome, error: &RpcError) {
        if self.inner.settings.access_log {
            let span = tracing::info_span!(
                "rpc",
                via = %self.via,
                correlation_id = %kaiju_core::shortened(&self.parsed.correlation_id),
                trace_id = self.parsed.trace.map(|t| tracing::field::display(t.trace_id())),
            );
            span.in_scope(
                || tracing::info!(?outcome, duration_ms = 0.0, error = %error, "not run"),
            );
        }
    }

    async fn execute(
        &self,
        call: Call,
        earlier: Option<(&[Option<&Value>], &mut Budget)>,
        ran: &mut bool,
    ) -> Response {
        let Call { method, params, id } = call;
        let name = match method {
            Ok(name) => name,
            Err(e) => return Response::error(id, e, Outcome::Rejected),
        };
        if Instant::now() >= self.parsed.deadline {
            // The deadline passed before the method started: it never starts (kaiju ran it up
            // to its first await, D23). Checked before the method is looked up: a request read
            // after its deadline expired, whether its method exists here or not (kaiju
            // answered MethodNotFound), so that it is counted and delivered as expired, as
            // every other request of its outage is.
            return Response::error(
                id,
                RpcError::request_timeout(self.parsed.deadline_unix),
                Outcome::Expired,
            );
        }
        let Some(method) = self
            .inner
            .methods
            .get(&name)
            .filter(|m| self.inner.visible(self.scope, m))
        else {
            return Response::error(
                id,
                RpcError::method_not_found(Some(&name)),
                Outcome::Rejected,
            );
        };
        let params = match earlier {
            Some((results, budget)) => match template::fill_within(&params, results, budget) {
                Ok(filled) => filled,
                Err(e) => {
                    let error = RpcError::invalid_params(format!("Invalid params: {e}"))
                        .with_data("template", e.to_string());
                    return Response::error(id, error, Outcome::Rejected);
                }
            },
            None => params,
        };
        let ctx = RequestContext::new(&name, self.parsed, self.headers, self.scope);
        if self.inner.settings.request_logs {
            tracing::info!(params = ?redacted(&params), "request");
        }
        *ran = true;
        let attempts = self.parsed.attempts.max(1);
        let mut attempt = 1;
        // The last attempt takes the params themselves: a batch never holds two copies of
        // large params while a method runs, unless the method may run again.
        let mut params = Some(params);
        let result = loop {
            let this = if attempt < attempts {
                params.clone()
            } else {
                params.take()
            };
            let future = (method.call)(this.unwrap_or(Value::Nil), ctx.clone());
            let run = ctx.clone().scope_over(CatchUnwind(future));
            let result = match tokio::time::timeout_at(self.parsed.deadline, run).await {
                Err(_) => {
                    break Err((
                        RpcError::request_timeout(self.parsed.deadline_unix),
                        Outcome::TimedOut,
                    ));
                }
                Ok(None) => {
                    break Err((
                        RpcError::internal(format_args!("method {name} panicked")),
                        Outcome::Failed,
                    ));
                }
                Ok(Some(result)) => result,
            };
            match result {
                Ok(value) => break Ok(value),
                Err(Failure::Params(e) | Failure::Unencodable(e)) => {
                    break Err((e, Outcome::Rejected));
                }
                Err(Failure::Method(e)) => {
                    let wait = pause(attempt - 1);
                    if e.is_retryable()
                        && attempt < attempts
                        && Instant::now() + wait < self.parsed.deadline
                    {
                        tracing::info!(attempt, error = %e, detail = e.detail(), "method failed; retrying (RPC-Retries)");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    let outcome = if e.is_client_error() {
                        Outcome::ClientError
                    } else {
                        Outcome::Failed
                    };
                    break Err((e, outcome));
                }
            }
        };
        if let Ok(value) = &result
            && self.inner.settings.response_logs
        {
            tracing::info!(result = ?value, "response");
        }
        match result {
            Ok(value) => Response {
                id,
                result: Ok(value),
                outcome: Outcome::Ok,
            },
            Err((e, outcome)) => Response::error(id, e, outcome),
        }
    }

    /// Runs a batch in order under the body's one deadline; a response per request.
    ///
    /// - A request that fails keeps its real error (kaiju replaced it with an empty
    ///   `InvalidParams` under the abort flag, D15); with `RPC-Batch-Abort-Error` the later ones
    ///   are `Aborted`.
    /// - A template that cannot be filled aborts the rest (their params likely depend on it).
    /// - Once the deadline passed, the rest get `RequestTimeout` without running (`Expired`;
    ///   `TimedOut` after a request the deadline cut while it ran).
    pub(crate) async fn batch(&self, calls: Vec<Call>) -> Vec<Response> {
        // The results are read from the responses: a batch holds each result once.
        let mut budget = Budget::new(self.inner.settings.max_batch_bytes);
        let mut responses: Vec<Response> = Vec::with_capacity(calls.len());
        let mut stop: Option<(RpcError, Outcome)> = None;
        for (i, call) in calls.into_iter().enumerate() {
            if let Some((error, outcome)) = &stop {
                self.inner.counters.count(*outcome);
                self.log_skipped(*outcome, error);
                (self.inner.metrics).skipped(self.label(&call), self.via, *outcome);
                responses.push(Response::error(call.id, error.clone(), *outcome));
                continue;
            }
            let templated = self.parsed.template && i > 0;
            let mut response = if templated {
                let results: Vec<Option<&Value>> =
                    responses.iter().map(|r| r.result.as_ref().ok()).collect();
                self.one(call, Some((&results, &mut budget))).await
            } else {
                self.one(call, None).await
            };
            let mut templated = templated
                && response
                    .result
                    .as_ref()
                    .err()
                    .and_then(|e| e.data("template"))
                    .is_some();
            if self.parsed.template
                && let Ok(result) = &response.result
                && let Err(reason) = budget.hold(result)
            {
                // Later templates may copy it: a result the budget cannot hold is dropped
                // (its method ran; running it again would give the same), and the rest of the
                // batch is aborted as after a template that cannot be filled.
                let error = RpcError::invalid_request(format!("Invalid request: {reason}"))
                    .with_data("max_batch_bytes", self.inner.settings.max_batch_bytes);
                response = Response::error(response.id, error, Outcome::Rejected);
                templated = true;
            }
            if response.outcome == Outcome::TimedOut {
                // Cut at the deadline while it ran: the batch is worth another delivery.
                stop = Some((
                    RpcError::request_timeout(self.parsed.deadline_unix),
                    Outcome::TimedOut,
                ));
            } else if Instant::now() >= self.parsed.deadline {
                // Nothing later can start: they expire, whatever they are.
                stop = Some((
                    RpcError::request_timeout(self.parsed.deadline_unix),
                    Outcome::Expired,
                ));
            } else if response.result.is_err() && (self.parsed.abort_on_error || templated) {
                stop = Some((RpcError::aborted(), Outcome::Aborted));
            }
            responses.push(response);
        }
        responses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_in_logged_params_also_inside_lists() {
        let s = |t: &str| Value::Str(t.into());
        let user = Value::Map(vec![(s("name"), s("a")), (s("password"), s("hunter2"))]);
        let params = Value::Map(vec![(s("users"), Value::Array(vec![user]))]);
        let shown = format!("{:?}", redacted(&params));
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
    }
}
