//! Turning a response into a [`StoredResponse`] and back into a replay.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Response, StatusCode};
use tollgate_core::idempotency::StoredResponse;

use crate::body::WholeBody;
use crate::storable::StoredReplacement;

/// `Idempotent-Replayed: true` marks a response served from the store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Headers (and trailers) never stored: the hop-by-hop ones (they describe one connection,
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

/// What is kept of a response for its replays: status, headers, data and
/// trailers.
pub(crate) fn to_stored(parts: &Parts, body: &WholeBody) -> StoredResponse {
    let mut stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| is_stored(name))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.data.clone(),
    };
    for (name, value) in body.trailers.iter().flatten() {
        if is_stored(name) {
            stored.push_trailer(name.as_str(), value.as_bytes().to_vec());
        }
    }
    stored
}

/// What is kept of a handler's [`StoredReplacement`].
pub(crate) fn replacement_to_stored(replacement: StoredReplacement) -> StoredResponse {
    let mut head = Response::new(());
    *head.status_mut() = replacement.status;
    *head.headers_mut() = replacement.headers;
    let (parts, ()) = head.into_parts();
    to_stored(
        &parts,
        &WholeBody {
            data: replacement.body,
            trailers: None,
        },
    )
}

/// The replay of a stored response, marked `Idempotent-Replayed: true`.
/// `None` when the stored status is not a status (corrupt data); stored
/// headers and trailers that no longer parse are skipped.
pub(crate) fn replay(stored: StoredResponse) -> Option<Response<WholeBody>> {
    let status = StatusCode::from_u16(stored.status).ok()?;
    let mut headers = HeaderMap::with_capacity(stored.headers.len() + 1);
    append_parsed(&mut headers, stored.response_headers(), "header");
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let mut trailers = HeaderMap::new();
    append_parsed(&mut trailers, stored.trailers(), "trailer");
    let mut response = Response::new(WholeBody {
        data: stored.body,
        trailers: Some(trailers).filter(|trailers| !trailers.is_empty()),
    });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

fn append_parsed<'a>(map: &mut HeaderMap, fields: impl Iterator<Item = (&'a str, &'a [u8])>, kind: &'static str) {
    for (name, value) in fields {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => tracing::warn!(%name, kind, "skipped a stored field that does not parse"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn whole(data: &'static [u8], trailers: Option<HeaderMap>) -> WholeBody {
        WholeBody {
            data: Bytes::from_static(data),
            trailers,
        }
    }

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
        let stored = to_stored(&parts, &whole(b"{}", None));
        let names: Vec<&str> = stored.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["content-type", "location", "x-multi", "x-multi"]);

        let replayed = replay(stored).expect("a valid stored response");
        assert_eq!(replayed.status(), 201);
        assert_eq!(replayed.headers()["location"], "/v1/messages/msg_1");
        let multi: Vec<&HeaderValue> = replayed.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
        assert_eq!(replayed.headers()[IDEMPOTENT_REPLAYED], "true");
        assert!(replayed.headers().get("set-cookie").is_none());
        assert_eq!(replayed.into_body(), whole(b"{}", None));
    }

    #[test]
    fn trailers_are_stored_apart_from_the_headers_and_replayed_as_trailers() {
        let response = Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.append("x-multi", HeaderValue::from_static("one"));
        trailers.append("x-multi", HeaderValue::from_static("two"));
        trailers.insert("set-cookie", HeaderValue::from_static("session=abc"));
        let stored = to_stored(&parts, &whole(b"\0\0\0\0\0", Some(trailers.clone())));
        assert_eq!(stored.response_headers().count(), 1);
        let names: Vec<&str> = stored.trailers().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["grpc-status", "x-multi", "x-multi"],
            "Set-Cookie is never stored"
        );

        let replayed = replay(stored).expect("a valid stored response");
        assert_eq!(replayed.headers().len(), 2, "content-type and Idempotent-Replayed");
        let body = replayed.into_body();
        assert_eq!(body.data, "\0\0\0\0\0");
        trailers.remove("set-cookie");
        assert_eq!(body.trailers, Some(trailers));
    }

    #[test]
    fn corrupt_stored_data_is_not_replayed_blindly() {
        let corrupt = StoredResponse {
            status: 1000,
            headers: vec![],
            body: Bytes::new(),
        };
        assert!(replay(corrupt).is_none());
        let mut bad_fields = StoredResponse {
            status: 200,
            headers: vec![("bad name".into(), b"x".to_vec()), ("ok".into(), b"\n".to_vec())],
            body: Bytes::new(),
        };
        bad_fields.push_trailer("bad trailer", b"x".to_vec());
        let replayed = replay(bad_fields).expect("a valid status");
        assert_eq!(replayed.headers().len(), 1, "only Idempotent-Replayed");
        assert_eq!(replayed.body().trailers, None, "no trailer parsed, so none at all");
    }
}
