//! Request extractors: bearer authentication and strict JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::state::AppState;
use agentsigna_core::model::Principal;

/// Largest accepted JSON body.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest accepted body of a policy upload (the source may be up to 1 MiB).
pub const MAX_POLICY_BODY: usize = 1024 * 1024 + 4096;

/// The authenticated caller.
pub struct Auth(pub Principal);

/// The outcome of authenticating a request's bearer token, left in its extensions by
/// the limits middleware so that [`Auth`] does not authenticate twice (`Err`: the
/// credential is unknown or revoked, with the reason).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Result<Principal, String>);

/// The bearer token of a request: `Ok(None)` without an `Authorization` header, `Err`
/// (the reason) when the header is not `Bearer <credential>`.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| "malformed Authorization header")?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(Some)
        .ok_or("expected Authorization: Bearer <credential>")
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauth = |d: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", d);
        let token = bearer_token(&parts.headers)
            .map_err(unauth)?
            .ok_or_else(|| unauth("missing Authorization: Bearer <credential>"))?;
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(Ok(p))) => Ok(Auth(p.clone())),
            Some(Authenticated(Err(d))) => Err(unauth(d)),
            None => Ok(Auth(state.engine.authenticate(token).await?)),
        }
    }
}

/// The problem for a request body that could not be read: 413 over `limit`, 408 when it
/// did not arrive within the body timeout, 400 otherwise (the client went away).
pub fn body_error(e: &axum::Error, limit: usize) -> ApiError {
    if super::server::is_body_timeout(e) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            "the request body did not arrive in time",
        );
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            break;
        }
        cur = err.source();
    }
    if cur.is_none() {
        return ApiError::bad_request(None, "the request body could not be read");
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        "Body too large",
        format!("the body is larger than {limit} bytes"),
    )
}

/// A JSON body: size-limited, `application/json`, unknown fields and wrong types refused
/// with the path of the offending member.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be application/json",
            ));
        }
        let limit = if req.uri().path() == "/v1/policies" { MAX_POLICY_BODY } else { MAX_BODY };
        // A declared length over the limit is refused before anything is read.
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Body too large",
                format!("the body is larger than {limit} bytes"),
            ));
        }
        let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| body_error(&e, limit))?;
        let _ = state;
        parse_json(&body).map(JsonBody)
    }
}

/// Parses JSON, naming the offending member on failure. A duplicate member name, at any
/// depth (also inside free-form members such as `context`), is refused with its path
/// (`amount.value`, `context.a`): every body is I-JSON (RFC 7493).
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if let Some(path) = duplicate_member(body) {
        return Err(ApiError::bad_request(
            Some(path.clone()),
            format!("{path}: duplicate member name (a JSON body may name each member once)"),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." || path.is_empty() { None } else { Some(path) };
            let detail = match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("malformed JSON: {inner}")
                }
                _ => match &field {
                    Some(f) => format!("{f}: {inner}"),
                    None => inner.to_string(),
                },
            };
            // serde names missing members in the message, not in the path.
            let msg = inner.to_string();
            let missing = msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()).map(str::to_owned);
            let field = match (field, missing) {
                (Some(f), Some(m)) => Some(format!("{f}.{m}")),
                (None, Some(m)) => Some(m),
                (f, None) => f.or_else(|| msg.split('`').nth(1).map(str::to_owned)),
            };
            Err(ApiError::bad_request(field, detail))
        }
    }
}

/// Query parameters; a bad query is a 400 problem naming the parameter when the parser
/// does (`unknown field `x``, `missing field `x``).
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Q(v)),
            Err(e) => {
                let text = e.body_text();
                let field = text.split('`').nth(1).filter(|f| !f.is_empty()).map(str::to_owned);
                Err(ApiError::bad_request(field, format!("invalid query: {text}")))
            }
        }
    }
}

/// Path parameters; a bad path is a 400 problem.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(P(v)),
            Err(e) => Err(ApiError::bad_request(None, format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// The path of the first duplicate member name of a JSON document (`amount.value`,
/// `context.items[2].sku`), if any; `None` also for a document that does not parse (the
/// typed parse then reports why).
pub fn duplicate_member(body: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    use std::collections::HashSet;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
                if !seen.insert(key) {
                    *self.found.borrow_mut() = Some(path);
                    return Err(A::Error::custom("duplicate member"));
                }
                map.next_value_seed(Walk { path, found: self.found })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), found: &found }.deserialize(&mut de);
    found.into_inner()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::duplicate_member;

    #[test]
    fn duplicate_members_are_found_by_their_path_at_any_depth() {
        let cases = [
            (r#"{"a":1,"a":2}"#, Some("a")),
            (r#"{"amount":{"value":"1","currency":"USD","value":"2"}}"#, Some("amount.value")),
            (r#"{"context":{"x":[{"k":1},{"k":1,"k":2}]}}"#, Some("context.x[1].k")),
            (r#"{"a":{"b":1},"c":{"b":1}}"#, None),
            (r#"{"a":"#, None),
        ];
        for (body, want) in cases {
            assert_eq!(duplicate_member(body.as_bytes()).as_deref(), want, "{body}");
        }
    }
}
