//! Turning a request body into JSON text, the way PostHog's capture service and Mixpanel's
//! ingestion accept it: raw JSON, a form field `data=`, base64, gzip (announced by
//! `Content-Encoding`, by a `compression` parameter, or only by its magic bytes).
//!
//! Every step is bounded by the caller's limit on decoded bytes: a small body that would
//! inflate past it (a gzip bomb, gzip inside gzip) is refused as soon as the limit is
//! passed, without inflating the rest. Each step consumes what the previous one produced, so
//! at most two copies of the body are alive at once, and a body that needs no decoding is
//! not copied at all.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Why a body could not be decoded. All are permanent: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body decodes to more than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Malformed(String),
    #[error("compression `{0}` is not supported; send JSON, gzip or base64")]
    Unsupported(String),
}

/// What the request says about its body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Envelope<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// The `compression` query parameter.
    pub compression: Option<&'a str>,
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut inflated = Vec::new();
    // One byte past the limit is enough to know it was passed.
    let ceiling = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(bytes)
        .take(ceiling)
        .read_to_end(&mut inflated)
        .map_err(|error| DecodeError::Malformed(format!("gzip: {error}")))?;
    if inflated.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(inflated)
}

fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

fn base64_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE.decode(&text))
        .ok()
}

fn within(bytes: Cow<'_, [u8]>, limit: usize) -> Result<Cow<'_, [u8]>, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(bytes)
}

/// Applies a `compression` hint (or sniffs when there is none) to a payload.
fn unwrap_payload<'a>(
    payload: Cow<'a, [u8]>,
    compression: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let hint = compression.map(str::to_ascii_lowercase);
    match hint.as_deref() {
        Some(unsupported @ ("lz64" | "lz-string")) => {
            Err(DecodeError::Unsupported(unsupported.to_string()))
        }
        _ if payload.starts_with(GZIP_MAGIC) => gunzip(&payload, limit).map(Cow::Owned),
        // Already JSON (say, gunzipped by its Content-Encoding): the hint described the
        // transport, not this.
        _ if looks_like_json(&payload) => within(payload, limit),
        Some("base64" | "b64") => {
            let decoded = base64_decode(&payload)
                .ok_or_else(|| DecodeError::Malformed("base64 payload does not decode".into()))?;
            drop(payload);
            unwrap_payload(Cow::Owned(decoded), None, limit)
        }
        Some("gzip" | "gzip-js") => match base64_decode(&payload) {
            Some(decoded) if decoded.starts_with(GZIP_MAGIC) => {
                drop(payload);
                gunzip(&decoded, limit).map(Cow::Owned)
            }
            _ => Err(DecodeError::Malformed(
                "compression=gzip but the payload is not gzip".into(),
            )),
        },
        // Legacy endpoints send base64 without saying so.
        _ => match base64_decode(&payload) {
            Some(decoded) if looks_like_json(&decoded) || decoded.starts_with(GZIP_MAGIC) => {
                drop(payload);
                unwrap_payload(Cow::Owned(decoded), None, limit)
            }
            _ => within(payload, limit),
        },
    }
}

/// The JSON text of a request body, at most `limit` bytes once decoded.
pub fn decode<'a>(
    body: &'a [u8],
    envelope: Envelope<'_>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let gzipped_transport = envelope
        .content_encoding
        .is_some_and(|encoding| encoding.to_ascii_lowercase().contains("gzip"));
    let body: Cow<'a, [u8]> = if gzipped_transport || body.starts_with(GZIP_MAGIC) {
        Cow::Owned(gunzip(body, limit)?)
    } else {
        Cow::Borrowed(body)
    };
    let is_form = envelope.content_type.is_some_and(|kind| {
        kind.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form {
        let mut data = None;
        let mut compression = envelope.compression.map(str::to_string);
        for (key, value) in form_urlencoded::parse(&body) {
            match key.as_ref() {
                "data" => data = Some(value.into_owned()),
                "compression" => compression = Some(value.into_owned()),
                _ => {}
            }
        }
        drop(body);
        let data =
            data.ok_or_else(|| DecodeError::Malformed("form body without a `data` field".into()))?;
        return unwrap_payload(Cow::Owned(data.into_bytes()), compression.as_deref(), limit);
    }
    unwrap_payload(body, envelope.compression, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const JSON: &[u8] = br#"{"event":"x"}"#;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn form(data: &str, compression: Option<&str>) -> Vec<u8> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("data", data);
        if let Some(compression) = compression {
            form.append_pair("compression", compression);
        }
        form.finish().into_bytes()
    }

    const FORM: Envelope<'static> = Envelope {
        content_type: Some("application/x-www-form-urlencoded"),
        content_encoding: None,
        compression: None,
    };

    #[test]
    fn every_accepted_encoding_decodes_to_the_same_json() {
        let gz = gzip(JSON);
        let b64 = STANDARD.encode(JSON);
        let gz_b64 = STANDARD.encode(&gz);
        let cases: Vec<(Vec<u8>, Envelope<'_>)> = vec![
            (JSON.to_vec(), Envelope::default()),
            (
                gz.clone(),
                Envelope {
                    content_encoding: Some("gzip"),
                    ..Envelope::default()
                },
            ),
            (
                gz.clone(),
                Envelope {
                    compression: Some("gzip-js"),
                    ..Envelope::default()
                },
            ),
            (gz.clone(), Envelope::default()),
            (
                b64.clone().into_bytes(),
                Envelope {
                    compression: Some("base64"),
                    ..Envelope::default()
                },
            ),
            (b64.clone().into_bytes(), Envelope::default()),
            (form(std::str::from_utf8(JSON).unwrap(), None), FORM),
            (form(&b64, None), FORM),
            (form(&gz_b64, Some("gzip-js")), FORM),
            (
                gzip(&form(std::str::from_utf8(JSON).unwrap(), None)),
                Envelope {
                    content_encoding: Some("gzip"),
                    ..FORM
                },
            ),
            // gzip inside gzip: the transport's, then the payload's.
            (
                gzip(&gz),
                Envelope {
                    content_encoding: Some("gzip"),
                    ..Envelope::default()
                },
            ),
        ];
        for (index, (body, envelope)) in cases.into_iter().enumerate() {
            assert_eq!(
                decode(&body, envelope, 1024).map(Cow::into_owned),
                Ok(JSON.to_vec()),
                "case {index}"
            );
        }
    }

    #[test]
    fn plain_json_is_not_copied() {
        assert!(matches!(
            decode(JSON, Envelope::default(), 1024),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "the bomb is small: {}", bomb.len());
        assert_eq!(
            decode(&bomb, Envelope::default(), 1024 * 1024),
            Err(DecodeError::TooLarge(1024 * 1024))
        );
        let nested = gzip(&bomb);
        assert_eq!(
            decode(
                &nested,
                Envelope {
                    content_encoding: Some("gzip"),
                    ..Envelope::default()
                },
                1024 * 1024
            ),
            Err(DecodeError::TooLarge(1024 * 1024)),
            "the inner bomb is bounded as well"
        );
    }

    #[test]
    fn plain_bodies_and_base64_are_bounded_too() {
        let big = vec![b'['; 2048];
        assert_eq!(
            decode(&big, Envelope::default(), 1024),
            Err(DecodeError::TooLarge(1024))
        );
        assert_eq!(
            decode(&form(&"[".repeat(2048), None), FORM, 1024),
            Err(DecodeError::TooLarge(1024))
        );
    }

    #[test]
    fn bad_input_says_why() {
        assert!(matches!(
            decode(
                b"x",
                Envelope {
                    compression: Some("LZ64"),
                    ..Envelope::default()
                },
                10
            ),
            Err(DecodeError::Unsupported(hint)) if hint == "lz64"
        ));
        assert!(matches!(
            decode(b"a=b", FORM, 10),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0x1f, 0x8b, 0, 1], Envelope::default(), 10),
            Err(DecodeError::Malformed(_))
        ));
        let truncated = gzip(&[b'x'; 4096]);
        assert!(matches!(
            decode(
                &truncated[..truncated.len() / 2],
                Envelope::default(),
                1 << 20
            ),
            Err(DecodeError::Malformed(_))
        ));
    }

    const LIMIT: usize = 1024;

    fn envelopes() -> impl Strategy<Value = (Option<String>, Option<String>, Option<String>)> {
        let hint = prop_oneof![
            Just("gzip".to_string()),
            Just("gzip-js".to_string()),
            Just("base64".to_string()),
            Just("b64".to_string()),
            Just("lz64".to_string()),
            Just("application/x-www-form-urlencoded".to_string()),
            "\\PC{0,12}",
        ];
        (
            proptest::option::of(hint.clone()),
            proptest::option::of(hint.clone()),
            proptest::option::of(hint),
        )
    }

    fn check(body: &[u8], envelope: &(Option<String>, Option<String>, Option<String>)) {
        let envelope = Envelope {
            content_type: envelope.0.as_deref(),
            content_encoding: envelope.1.as_deref(),
            compression: envelope.2.as_deref(),
        };
        if let Ok(decoded) = decode(body, envelope, LIMIT) {
            assert!(decoded.len() <= LIMIT, "{} bytes", decoded.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_bytes_decode_or_say_why(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            envelope in envelopes(),
        ) {
            check(&body, &envelope);
        }

        #[test]
        fn gzip_and_base64_of_arbitrary_bytes_decode_or_say_why(
            inner in proptest::collection::vec(any::<u8>(), 0..2048),
            envelope in envelopes(),
        ) {
            let gz = gzip(&inner);
            check(&gz, &envelope);
            check(&gzip(&gz), &envelope);
            check(&gz[..gz.len() / 2], &envelope);
            check(STANDARD.encode(&inner).as_bytes(), &envelope);
            check(STANDARD.encode(&gz).as_bytes(), &envelope);
            check(URL_SAFE.encode(&inner).as_bytes(), &envelope);
        }

        #[test]
        fn form_bodies_decode_or_say_why(
            data in "\\PC{0,256}",
            compression in proptest::option::of("\\PC{0,8}"),
            raw in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let form_envelope = (Some("application/x-www-form-urlencoded".to_string()), None, None);
            check(&form(&data, compression.as_deref()), &form_envelope);
            check(&form(&STANDARD.encode(gzip(data.as_bytes())), Some("gzip-js")), &form_envelope);
            let mut prefixed = b"data=".to_vec();
            prefixed.extend_from_slice(&raw);
            check(&prefixed, &form_envelope);
        }
    }
}
