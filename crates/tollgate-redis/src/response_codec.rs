//! A [`StoredResponse`] as compact bytes: status, headers and body,
//! length-prefixed, binary-safe (JSON would spell a body as an array of
//! numbers, four times its size).
//!
//! Layout: status (u16), header count (u32), then per header its name
//! length (u32), name, value length (u32) and value, then the body to the
//! end. Integers are big-endian.

use bytes::Bytes;
use tollgate_core::idempotency::StoredResponse;

/// Appends the encoding of `response` to `out`.
pub(crate) fn encode_into(response: &StoredResponse, out: &mut Vec<u8>) {
    out.reserve(6 + response.stored_size() + 8 * response.headers.len());
    out.extend_from_slice(&response.status.to_be_bytes());
    out.extend_from_slice(&len32(response.headers.len()).to_be_bytes());
    for (name, value) in &response.headers {
        out.extend_from_slice(&len32(name.len()).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&len32(value.len()).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&response.body);
}

// Headers are far below 4 GiB; a larger one could not have been received.
fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("a header shorter than 4 GiB")
}

/// Decodes [`encode_into`]'s output; `None` if it is not well formed.
pub(crate) fn decode(mut bytes: &[u8]) -> Option<StoredResponse> {
    let status = u16::from_be_bytes(take(&mut bytes, 2)?.try_into().ok()?);
    let count = read_u32(&mut bytes)?;
    // Each header takes at least 8 bytes: a count beyond that is corrupt,
    // and must not size an allocation.
    if count as usize > bytes.len() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_len = read_u32(&mut bytes)? as usize;
        let name = String::from_utf8(take(&mut bytes, name_len)?.to_vec()).ok()?;
        let value_len = read_u32(&mut bytes)? as usize;
        let value = take(&mut bytes, value_len)?.to_vec();
        headers.push((name, value));
    }
    Some(StoredResponse {
        status,
        headers,
        body: Bytes::copy_from_slice(bytes),
    })
}

fn read_u32(bytes: &mut &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(response: &StoredResponse) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(response, &mut out);
        out
    }

    #[test]
    fn responses_round_trip_byte_for_byte() {
        let response = StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-multi".into(), b"one".to_vec()),
                ("x-multi".into(), vec![0x80, 0xff, 0]),
                ("x-empty".into(), Vec::new()),
            ],
            body: Bytes::from((0..=255u8).collect::<Vec<u8>>()),
        };
        let encoded = encode(&response);
        assert_eq!(decode(&encoded), Some(response));
        let empty = StoredResponse {
            status: 204,
            headers: Vec::new(),
            body: Bytes::new(),
        };
        assert_eq!(encode(&empty).len(), 6);
        assert_eq!(decode(&encode(&empty)), Some(empty));
    }

    #[test]
    fn malformed_bytes_are_refused_without_panicking() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\x00"), None);
        assert_eq!(decode(b"\x00\xc8\xff\xff\xff\xff"), None, "an absurd header count");
        assert_eq!(
            decode(b"\x00\xc8\x00\x00\x00\x01\x00\x00\x00\x09ab"),
            None,
            "a truncated name"
        );
        let valid = encode(&StoredResponse {
            status: 200,
            headers: vec![("a".into(), b"b".to_vec())],
            body: Bytes::from_static(b"body"),
        });
        for cut in 0..valid.len() - 4 {
            assert_eq!(decode(&valid[..cut]), None, "cut at {cut}");
        }
    }
}
