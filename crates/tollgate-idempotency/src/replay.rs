//! Turning a response into a [`StoredResponse`] and back into a replay.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use tollgate_core::idempotency::StoredResponse;

/// `Idempotent-Replayed: true` marks a response served from the store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Headers never stored: the hop-by-hop ones (they describe one connection,
/// RFC 9110 §7.6.1), and `Set-Cookie`, because a cookie is a credential
/// minted for one response and a store is the wrong place to keep it.
fn is_stored(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "set-cookie"
            | "idempotent-replayed"
    )
}

/// What is kept of a response for its replays.
pub(crate) fn to_stored(parts: &Parts, body: Bytes) -> StoredResponse {
    StoredResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| is_stored(name))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

/// The replay of a stored response, marked `Idempotent-Replayed: true`.
/// `None` when the stored status is not a status (corrupt data); stored
/// headers that no longer parse are skipped.
pub(crate) fn replay(stored: StoredResponse) -> Option<Response<Full<Bytes>>> {
    let status = StatusCode::from_u16(stored.status).ok()?;
    let mut response = Response::new(Full::new(stored.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(stored.headers.len() + 1);
    for (name, value) in stored.headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %name, "skipped a stored header that does not parse"),
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_keep_status_body_and_end_to_end_headers_in_order() {
        let response = Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .header("location", "/v1/messages/msg_1")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("set-cookie", "session=abc")
            .header("connection", "close")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let stored = to_stored(&parts, Bytes::from_static(b"{}"));
        let names: Vec<&str> = stored.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["content-type", "location", "x-multi", "x-multi"]);

        let replayed = replay(stored).expect("a valid stored response");
        assert_eq!(replayed.status(), 201);
        assert_eq!(replayed.headers()["location"], "/v1/messages/msg_1");
        let multi: Vec<&HeaderValue> = replayed.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
        assert_eq!(replayed.headers()[IDEMPOTENT_REPLAYED], "true");
        assert!(replayed.headers().get("set-cookie").is_none());
    }

    #[test]
    fn corrupt_stored_data_is_not_replayed_blindly() {
        let corrupt = StoredResponse {
            status: 1000,
            headers: vec![],
            body: Bytes::new(),
        };
        assert!(replay(corrupt).is_none());
        let bad_header = StoredResponse {
            status: 200,
            headers: vec![("bad name".into(), b"x".to_vec()), ("ok".into(), b"\n".to_vec())],
            body: Bytes::new(),
        };
        let replayed = replay(bad_header).expect("a valid status");
        assert_eq!(replayed.headers().len(), 1, "only Idempotent-Replayed");
    }
}
