//! A [`tower`](https://docs.rs/tower) layer that puts a [`Gate`] in front of a Rust
//! HTTP service (axum, hyper, tonic…): feature `tower`.
//!
//! [`GateLayer`] checks every request before the inner service sees it: the passport
//! (`Authorization: Passport <jws>` or `AgentSigna-Passport`), the holder proof
//! (`AgentSigna-Proof`) when the passport is key-bound, and single use. A refused
//! request is answered with a 401/403/409 `application/problem+json` ([`Refusal`]) and
//! never reaches the inner service. An accepted one reaches it with the
//! [`VerifiedPassport`] in its extensions, so handlers can read the case, the action and
//! the amount they were authorized for.
//!
//! The layer needs no async runtime: verification is synchronous CPU work (two
//! signature checks at most). It holds the gate behind an `Arc<RwLock<_>>` so the
//! application can install a refetched JWK set ([`GateLayer::gate`]) after a key rotation.
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//! use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::{VerifiedPassport, Verifier}};
//! use agentsigna_verify::tower::GateLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! // The protected service: here a bare `tower_service::Service`; with axum,
//! // `Router::new().route(...).layer(layer)` and `Extension<VerifiedPassport>`.
//! #[derive(Clone)]
//! struct Orders;
//! impl Service<http::Request<String>> for Orders {
//!     type Response = http::Response<String>;
//!     type Error = Infallible;
//!     type Future = Ready<Result<http::Response<String>, Infallible>>;
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//!         Poll::Ready(Ok(()))
//!     }
//!     fn call(&mut self, req: http::Request<String>) -> Self::Future {
//!         let case = req.extensions().get::<VerifiedPassport>().map(|v| v.claims.case.id.clone());
//!         ready(Ok(http::Response::new(format!("order for case {case:?}"))))
//!     }
//! }
//!
//! let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example");
//! let mut service = layer.layer(Orders);
//! // No passport: refused before `Orders` sees the request.
//! let response = service.call(http::Request::new(String::new()));
//! let response = std::pin::pin!(response).poll(&mut Context::from_waker(std::task::Waker::noop()));
//! # use std::future::Future;
//! let Poll::Ready(Ok(response)) = response else { unreachable!() };
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::gate::{passport_from_headers, Gate, GateRequest, Refusal, PROOF_HEADER};
use crate::passport::VerifiedPassport;
use crate::{Clock, Error, SystemClock};

/// A [`Layer`] enforcing passports in front of a service. See the [module](self).
#[derive(Debug, Clone)]
pub struct GateLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    gate: Arc<RwLock<Gate>>,
    public_url: String,
    clock: Arc<dyn Clock>,
}

impl GateLayer {
    /// A layer checking requests with `gate` against the system clock. `public_url` is
    /// the scheme and authority agents call (e.g. `https://erp.example`): a holder
    /// proof's `htu` must equal it followed by the request path (without query). It is
    /// configured, never taken from the request's `Host`, which the caller controls.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example/");
    /// assert_eq!(layer.public_url(), "https://erp.example");
    /// ```
    pub fn new(gate: Gate, public_url: impl Into<String>) -> GateLayer {
        GateLayer::shared(Arc::new(RwLock::new(gate)), public_url)
    }

    /// A layer over a gate the application also holds, e.g. to install a refetched JWK
    /// set with `gate.write()?.verifier_mut().set_jwks(jwks)`.
    ///
    /// ```
    /// use std::sync::{Arc, RwLock};
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// let gate = Arc::new(RwLock::new(Gate::new(Verifier::new(Jwks::default(), "erp"))));
    /// let layer = GateLayer::shared(gate.clone(), "https://erp.example");
    /// assert!(Arc::ptr_eq(&gate, layer.gate()));
    /// ```
    pub fn shared(gate: Arc<RwLock<Gate>>, public_url: impl Into<String>) -> GateLayer {
        let public_url = public_url.into().trim_end_matches('/').to_owned();
        GateLayer { shared: Arc::new(Shared { gate, public_url, clock: Arc::new(SystemClock) }) }
    }

    /// Uses `clock` instead of the system clock (tests, replays of recorded traffic).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentsigna_verify::{clock::ManualClock, gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example")
    ///     .with_clock(Arc::new(ManualClock::new(0)));
    /// ```
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> GateLayer {
        let Shared { gate, public_url, .. } = &*self.shared;
        GateLayer { shared: Arc::new(Shared { gate: gate.clone(), public_url: public_url.clone(), clock }) }
    }

    /// The gate, shared with every service this layer made.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example");
    /// assert_eq!(layer.gate().read().unwrap().verifier().audience(), "erp");
    /// ```
    pub fn gate(&self) -> &Arc<RwLock<Gate>> {
        &self.shared.gate
    }

    /// The configured public URL, without a trailing `/`.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "http://127.0.0.1:9000");
    /// assert_eq!(layer.public_url(), "http://127.0.0.1:9000");
    /// ```
    pub fn public_url(&self) -> &str {
        &self.shared.public_url
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService { inner, shared: self.shared.clone() }
    }
}

/// The [`Service`] made by [`GateLayer`]: checks each request, then calls the inner
/// service with the [`VerifiedPassport`] in the request's extensions, or answers the
/// refusal itself.
///
/// ```
/// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier};
/// use agentsigna_verify::tower::{GateLayer, GateService};
/// use tower_layer::Layer;
/// #[derive(Debug, PartialEq)]
/// struct Orders;
/// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example");
/// let service: GateService<Orders> = layer.layer(Orders);
/// assert_eq!(service.get_ref(), &Orders);
/// ```
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> GateService<S> {
    /// The inner service.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// use tower_layer::Layer;
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example");
    /// assert_eq!(*layer.layer(7).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier, tower::GateLayer};
    /// use tower_layer::Layer;
    /// let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), "https://erp.example");
    /// assert_eq!(layer.layer("inner").into_inner(), "inner");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Shared {
    fn check<B>(&self, req: &Request<B>) -> Result<VerifiedPassport, Refusal> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let passport = passport_from_headers(header).ok_or_else(Refusal::no_passport)?;
        let url = format!("{}{}", self.public_url, req.uri().path());
        let gate_req = GateRequest { passport, proof: header(PROOF_HEADER), method: req.method().as_str(), url: &url };
        // A panic elsewhere while the lock was held for writing cannot leave a `Gate`
        // half-updated (`set_jwks` swaps one field), so a poisoned lock is still usable.
        let gate = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        gate.check(&gate_req, self.clock.as_ref()).map_err(|e: Error| Refusal::of(&e))
    }
}

/// The HTTP response for a refusal, with `B` built from the problem document.
///
/// ```
/// use agentsigna_verify::{gate::Refusal, tower::refusal_response, Error};
/// let response: http::Response<String> = refusal_response(&Refusal::of(&Error::ProofMissing));
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], "Passport");
/// ```
pub fn refusal_response<B: From<String>>(refusal: &Refusal) -> Response<B> {
    let mut response = Response::new(B::from(refusal.problem_json()));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(Refusal::CONTENT_TYPE));
    if refusal.status == 401 {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(Refusal::CHALLENGE));
    }
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GateService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.shared.check(&req) {
            Ok(verified) => {
                req.extensions_mut().insert(verified);
                ResponseFuture { kind: Kind::Inner { future: self.inner.call(req) } }
            }
            Err(refusal) => ResponseFuture { kind: Kind::Refused { response: Some(refusal_response(&refusal)) } },
        }
    }
}

pin_project! {
    /// The future of [`GateService`]: the inner service's, or a ready refusal. See the
    /// [module example](self), which polls one.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::convert::Infallible;
    use std::future::{ready, Ready};
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::jwk::Jwks;
    use crate::passport::{self, Verifier};
    use crate::proof;
    use crate::testing::{agent, claims, issuer, issuer_jwks, T0};

    const BASE: &str = "https://erp.example";

    fn token(jti: &str, aud: &str, bound: bool) -> String {
        passport::sign(&claims(jti, aud, bound), &issuer()).unwrap()
    }

    /// Records the case of every request that reached it.
    #[derive(Clone, Default)]
    struct Upstream(Arc<Mutex<Vec<String>>>);

    impl Service<Request<()>> for Upstream {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<()>) -> Self::Future {
            let case = req.extensions().get::<VerifiedPassport>().map(|v| v.claims.case.id.clone()).unwrap();
            self.0.lock().unwrap().push(case);
            ready(Ok(Response::new("ok".into())))
        }
    }

    fn run(service: &mut GateService<Upstream>, req: Request<()>) -> Response<String> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(service.poll_ready(&mut cx).is_ready());
        match std::pin::pin!(service.call(req)).poll(&mut cx) {
            Poll::Ready(Ok(r)) => r,
            Poll::Ready(Err(e)) => match e {},
            Poll::Pending => unreachable!("the upstream is always ready"),
        }
    }

    fn setup() -> (GateService<Upstream>, Upstream, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0 * 1000));
        let layer = GateLayer::new(Gate::new(Verifier::new(issuer_jwks(), "erp")), BASE).with_clock(clock.clone());
        let upstream = Upstream::default();
        (layer.layer(upstream.clone()), upstream, clock)
    }

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post("/v1/orders?draft=1");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn problem(r: &Response<String>) -> serde_json::Value {
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
        serde_json::from_str(r.body()).unwrap()
    }

    #[test]
    fn forwards_a_valid_passport_once_with_its_record() {
        let (mut svc, upstream, _) = setup();
        let t = token("p-1", "erp", false);
        let auth = format!("Passport {t}");
        assert_eq!(run(&mut svc, request(&[("authorization", &auth)])).status(), 200);
        assert_eq!(*upstream.0.lock().unwrap(), ["case-p-1"]);
        let again = run(&mut svc, request(&[("agentsigna-passport", &t)]));
        assert_eq!(again.status(), 409);
        assert_eq!(problem(&again)["code"], "replayed");
        let lower = format!("passport {t}"); // schemes are case-insensitive
        assert_eq!(run(&mut svc, request(&[("authorization", &lower)])).status(), 409);
        assert_eq!(upstream.0.lock().unwrap().len(), 1, "a replay never reaches the service");
    }

    #[test]
    fn refusals_have_their_status_and_reason() {
        let (mut svc, upstream, clock) = setup();
        let none = run(&mut svc, request(&[]));
        assert_eq!((none.status().as_u16(), problem(&none)["code"].as_str()), (401, Some("malformed")));
        assert_eq!(none.headers()[WWW_AUTHENTICATE], "Passport");
        let other = format!("Passport {}", token("p-2", "bank", false));
        let r = run(&mut svc, request(&[("authorization", &other)]));
        assert_eq!((r.status().as_u16(), problem(&r)["code"].as_str()), (403, Some("wrong_audience")));
        let bound = token("p-3", "erp", true);
        let auth = format!("Passport {bound}");
        let r = run(&mut svc, request(&[("authorization", &auth)]));
        assert_eq!((r.status().as_u16(), problem(&r)["code"].as_str()), (401, Some("proof_missing")));
        // A proof for another URL (the query is not part of `htu`, the path is).
        let wrong = proof::sign_proof(&agent(), &bound, "POST", &format!("{BASE}/v1/other"), T0, "n-1");
        let r = run(&mut svc, request(&[("authorization", &auth), ("agentsigna-proof", &wrong)]));
        assert_eq!((r.status().as_u16(), problem(&r)["code"].as_str()), (401, Some("proof_invalid")));
        let expired = format!("Passport {}", token("p-4", "erp", false));
        clock.advance_secs(400);
        let r = run(&mut svc, request(&[("authorization", &expired)]));
        assert_eq!((r.status().as_u16(), problem(&r)["code"].as_str()), (401, Some("expired")));
        assert!(upstream.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_key_bound_passport_passes_with_its_proof_and_refusals_do_not_burn_it() {
        let (mut svc, upstream, _) = setup();
        let bound = token("p-5", "erp", true);
        let auth = format!("Passport {bound}");
        assert_eq!(run(&mut svc, request(&[("authorization", &auth)])).status(), 401);
        let good = proof::sign_proof(&agent(), &bound, "POST", &format!("{BASE}/v1/orders"), T0, "n-2");
        let r = run(&mut svc, request(&[("authorization", &auth), ("agentsigna-proof", &good)]));
        assert_eq!(r.status(), 200);
        assert_eq!(*upstream.0.lock().unwrap(), ["case-p-5"]);
    }

    #[test]
    fn a_refetched_jwks_is_used_by_existing_services() {
        let clock = Arc::new(ManualClock::new(T0 * 1000));
        let layer = GateLayer::new(Gate::new(Verifier::new(Jwks::default(), "erp")), BASE).with_clock(clock.clone());
        let upstream = Upstream::default();
        let mut svc = layer.layer(upstream.clone());
        let auth = format!("Passport {}", token("p-6", "erp", false));
        let r = run(&mut svc, request(&[("authorization", &auth)]));
        assert_eq!(problem(&r)["code"], "unknown_key");
        layer.gate().write().unwrap().verifier_mut().set_jwks(issuer_jwks());
        assert_eq!(run(&mut svc, request(&[("authorization", &auth)])).status(), 200);
    }
}
