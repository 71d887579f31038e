//! Credentials taken out of text before it is stored or shown.
//!
//! Errors travel far: into `etl_runs.error`, `agent_runs.detail`, the quarantine's reasons,
//! the status page and the logs. An HTTP client's error names the URL it failed on, and a
//! platform's error body may echo the request; either can carry an access token. Every such
//! text passes through [`credentials`] on its way to storage, which removes:
//!
//! * the user-info of URLs (`https://user:password@host` → `https://[redacted]@host`);
//! * the values of parameters whose names say they are secret (`access_token=…`,
//!   `appsecret_proof=…`, `client_secret=…`, JSON `"access_token": "…"`, and headers such as
//!   `X-Shopify-Access-Token: …` or `Access-Token: …`);
//! * bearer and basic credentials (`Bearer …`, `Basic …`).

/// Parameter names whose values are credentials (compared without case).
const SECRET_NAMES: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "fb_exchange_token",
    "appsecret_proof",
    "client_secret",
    "api_key",
    "apikey",
    "api_secret",
    "secret",
    "password",
    "token",
    "code",
    "signature",
    "key",
];

const REDACTED: &str = "[redacted]";

/// `text` with every credential it carries replaced by `[redacted]`.
pub fn credentials(text: &str) -> String {
    let text = user_info(text);
    let text = parameters(&text);
    schemes(&text)
}

fn is_value_end(byte: u8) -> bool {
    matches!(
        byte,
        b'&' | b'"'
            | b'\''
            | b' '
            | b'\t'
            | b'\n'
            | b'\r'
            | b')'
            | b'>'
            | b','
            | b';'
            | b'}'
            | b']'
    )
}

/// Whether a parameter or header name says its value is a credential.
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.contains(&lower.as_str())
        || [
            "token",
            "secret",
            "password",
            "-key",
            "_key",
            "signature",
            "proof",
        ]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// `scheme://user:pass@host` → `scheme://[redacted]@host`.
fn user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#') || is_value_end(b))
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `name=value` and `"name": "value"` for secret names.
fn parameters(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        let starts_name =
            is_name_byte(bytes[index]) && (index == 0 || !is_name_byte(bytes[index - 1]));
        if !starts_name {
            index += 1;
            continue;
        }
        let name_end = index
            + bytes[index..]
                .iter()
                .take_while(|b| is_name_byte(**b))
                .count();
        let name = &text[index..name_end];
        let secret = is_secret_name(name);
        // After the name: `=` (query, form), `: ` (a header), or `":` / `" :` then a quote
        // (JSON).
        let mut value_start = name_end;
        let mut quoted = false;
        if bytes.get(value_start) == Some(&b'=') {
            value_start += 1;
        } else if bytes.get(value_start) == Some(&b':') && bytes.get(value_start + 1) == Some(&b' ')
        {
            value_start += 2;
        } else if bytes.get(value_start) == Some(&b'"') {
            let mut cursor = value_start + 1;
            while bytes.get(cursor) == Some(&b' ') {
                cursor += 1;
            }
            if bytes.get(cursor) != Some(&b':') {
                index = name_end;
                continue;
            }
            cursor += 1;
            while bytes.get(cursor) == Some(&b' ') {
                cursor += 1;
            }
            // Only a string can be a credential: `"code": 190` is an error code.
            if bytes.get(cursor) != Some(&b'"') {
                index = name_end;
                continue;
            }
            quoted = true;
            value_start = cursor + 1;
        } else {
            index = name_end;
            continue;
        }
        if !secret {
            index = value_start.max(name_end);
            continue;
        }
        let value_end = value_start
            + bytes[value_start..]
                .iter()
                .take_while(|b| {
                    if quoted {
                        **b != b'"'
                    } else {
                        !is_value_end(**b)
                    }
                })
                .count();
        // Already redacted (a caller scrubbed it first): leave it as it is.
        let done = text[value_start..].starts_with(REDACTED);
        if value_end > value_start && !done {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        index = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

/// `Bearer x`, `Basic x` → `Bearer [redacted]`.
fn schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let found = ["Bearer ", "bearer ", "Basic ", "basic "]
            .iter()
            .filter_map(|scheme| rest.find(scheme).map(|at| (at, scheme.len())))
            .min();
        let Some((at, length)) = found else {
            out.push_str(rest);
            return out;
        };
        let value_start = at + length;
        let value_end = value_start
            + rest.as_bytes()[value_start..]
                .iter()
                .take_while(|b| !is_value_end(**b))
                .count();
        out.push_str(&rest[..value_start]);
        if value_end > value_start {
            out.push_str(REDACTED);
        }
        rest = &rest[value_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_urls_are_removed() {
        let error = "error sending request for url (https://graph.facebook.com/v21.0/act_1/insights?fields=spend&access_token=EAAB123&appsecret_proof=abc): timed out";
        let clean = credentials(error);
        assert!(
            !clean.contains("EAAB123") && !clean.contains("abc)"),
            "{clean}"
        );
        assert!(clean.contains("fields=spend"), "{clean}");
        assert!(clean.contains("access_token=[redacted]"), "{clean}");
        assert!(clean.contains("timed out"));
    }

    #[test]
    fn user_info_json_and_schemes_are_removed() {
        assert_eq!(
            credentials("postgres://admin:hunter2@db.example:5432/x failed"),
            "postgres://[redacted]@db.example:5432/x failed"
        );
        assert_eq!(
            credentials(r#"{"error": {"message": "bad", "access_token": "EAAB", "code": 190}}"#),
            r#"{"error": {"message": "bad", "access_token": "[redacted]", "code": 190}}"#
        );
        assert_eq!(
            credentials("Authorization: Bearer sk_live_1 was refused"),
            "Authorization: Bearer [redacted] was refused"
        );
        assert_eq!(credentials("monkey=1&tokens=2"), "monkey=1&tokens=2");
        assert_eq!(
            credentials("400: echo x-shopify-access-token: shpat_123 abc\nAccess-Token: tt1"),
            "400: echo x-shopify-access-token: [redacted] abc\nAccess-Token: [redacted]"
        );
        assert_eq!(credentials("reason: timed out"), "reason: timed out");
        assert_eq!(
            credentials("x?appsecret_proof=[redacted]&y=1"),
            "x?appsecret_proof=[redacted]&y=1",
            "redacting twice changes nothing"
        );
        assert_eq!(credentials("no secrets here"), "no secrets here");
    }

    #[test]
    fn unicode_and_edges_survive() {
        for text in [
            "",
            "=",
            "token=",
            "é token=é&x",
            "://",
            "a://@",
            "\"token\":",
            "Bearer ",
        ] {
            let clean = credentials(text);
            assert!(!clean.contains('é') || text.contains('é'));
        }
        assert_eq!(credentials("é token=é&x"), "é token=[redacted]&x");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text: no panic, redacting twice is redacting once, and a token in a URL of it
        /// never survives.
        #[test]
        fn any_text_is_redacted_once_and_for_all(text in ".{0,200}", token in "[A-Za-z0-9]{12,40}") {
            let once = credentials(&text);
            proptest::prop_assert_eq!(credentials(&once), once.clone());
            let url = format!("{text} https://graph.facebook.com/x?access_token={token}&f=1 {text}");
            proptest::prop_assert!(!credentials(&url).contains(&token));
        }
    }
}
