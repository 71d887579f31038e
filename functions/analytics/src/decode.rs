//! Turning a request body into JSON text, the way PostHog's capture service and Mixpanel's
//! ingestion accept it: raw JSON, a form field `data=`, base64, gzip (announced by
//! `Content-Encoding`, by a `compression` parameter, or only by its magic bytes).
//!
//! Inflating is bounded: a small body that would inflate past the limit (a gzip bomb) is
//! refused without inflating the rest.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body inflates past {0} bytes")]
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
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
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

/// Applies a `compression` hint (or sniffs when there is none) to a payload.
fn unwrap_payload(
    payload: Vec<u8>,
    compression: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    let hint = compression.map(str::to_ascii_lowercase);
    match hint.as_deref() {
        Some("lz64" | "lz-string") => Err(DecodeError::Unsupported(hint.unwrap_or_default())),
        _ if payload.starts_with(GZIP_MAGIC) => gunzip(&payload, limit),
        // Already JSON (say, gunzipped by its Content-Encoding): the hint described the
        // transport, not this.
        _ if looks_like_json(&payload) => Ok(payload),
        Some("base64" | "b64") => {
            let decoded = base64_decode(&payload)
                .ok_or_else(|| DecodeError::Malformed("base64 payload does not decode".into()))?;
            unwrap_payload(decoded, None, limit)
        }
        Some("gzip" | "gzip-js") => match base64_decode(&payload) {
            Some(decoded) if decoded.starts_with(GZIP_MAGIC) => gunzip(&decoded, limit),
            _ => Err(DecodeError::Malformed(
                "compression=gzip but the payload is not gzip".into(),
            )),
        },
        // Legacy endpoints send base64 without saying so.
        _ => match base64_decode(&payload) {
            Some(decoded) if looks_like_json(&decoded) || decoded.starts_with(GZIP_MAGIC) => {
                unwrap_payload(decoded, None, limit)
            }
            _ => Ok(payload),
        },
    }
}

/// The JSON text of a request body, at most `limit` bytes once decoded.
pub fn decode(body: &[u8], envelope: Envelope<'_>, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let gzipped_transport = envelope
        .content_encoding
        .is_some_and(|encoding| encoding.to_ascii_lowercase().contains("gzip"));
    let body = if gzipped_transport || body.starts_with(GZIP_MAGIC) {
        gunzip(body, limit)?
    } else {
        body.to_vec()
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
        let data =
            data.ok_or_else(|| DecodeError::Malformed("form body without a `data` field".into()))?;
        return unwrap_payload(data.into_bytes(), compression.as_deref(), limit);
    }
    unwrap_payload(body, envelope.compression, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        ];
        for (index, (body, envelope)) in cases.into_iter().enumerate() {
            assert_eq!(
                decode(&body, envelope, 1024),
                Ok(JSON.to_vec()),
                "case {index}"
            );
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "the bomb is small: {}", bomb.len());
        assert_eq!(
            decode(&bomb, Envelope::default(), 1024 * 1024),
            Err(DecodeError::TooLarge(1024 * 1024))
        );
    }

    #[test]
    fn bad_input_says_why() {
        assert!(matches!(
            decode(
                b"x",
                Envelope {
                    compression: Some("lz64"),
                    ..Envelope::default()
                },
                10
            ),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode(b"a=b", FORM, 10),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0x1f, 0x8b, 0, 1], Envelope::default(), 10),
            Err(DecodeError::Malformed(_))
        ));
    }
}
