//! Property tests of what the email agent takes from outside: unsubscribe tokens from anyone's
//! address bar, Svix-signed deliveries, and the names people and workspaces give themselves,
//! which end up in an email's HTML and its subject line. Arbitrary input gives `Ok` or a
//! typed error, never a panic; what is accepted is what was signed; what is rendered is
//! escaped and keeps the subject on one line.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use email::campaigns::Campaign;
use email::templates::{
    Numbers, Person, Personalisation, SuggestionView, Templates, WorkspaceView, first_name,
};
use email::unsubscribe::{TOKEN_CHARS, TokenError, TokenSigner};
use proptest::prelude::*;
use shared::webhook::{SignatureError, SvixHeaders, sign_svix, verify_svix};
use uuid::Uuid;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Text as people type it, and as attackers do: markup, quotes, line breaks, emoji, Unicode
/// separators and controls.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[<>&\"' a-zA-Z\\r\\n\\t\u{2028}\u{85}🦀é]{0,40}",
        Just("<script>alert(1)</script>\r\nBcc: victim@example.test".to_string()),
    ]
}

/// A marker no template contains, so finding it raw in HTML means the input was not escaped.
const MARKUP: &str = "<b id=\"injected\">";

fn personalisation(first: String, workspace: String, numbers: bool) -> Personalisation {
    Personalisation {
        product: "Growth Agents".into(),
        user: Person {
            first_name: first,
            email: "someone@example.test".into(),
        },
        // A suggestion's text names the tenant's own ads and campaigns: as hostile as a name.
        suggestions: vec![SuggestionView {
            explanation: format!("Pause {workspace}"),
        }],
        workspace: WorkspaceView { name: workspace },
        numbers: numbers.then(|| Numbers {
            period: "last 7 days".into(),
            spend: "USD 1.00".into(),
            revenue: "USD 2.00".into(),
            roas: "2.00×".into(),
            orders: "1".into(),
            events: "1".into(),
        }),
        app_url: "https://app.example.test/".into(),
        unsubscribe_url: "https://api.example.test/email/unsubscribe?token=t".into(),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_tokens_are_refused_not_a_panic(token in prop_oneof![".{0,64}", "[A-Za-z0-9_-]{42,44}"]) {
        let signer = TokenSigner::new(vec!["secret".into()]);
        prop_assert!(matches!(signer.verify(&token), Err(TokenError::Malformed | TokenError::Forged)));
    }

    #[test]
    fn a_token_round_trips_and_any_one_bit_change_is_refused(
        user in any::<u128>().prop_map(Uuid::from_u128),
        secrets in prop::collection::vec(".{1,24}", 1..3),
        bit in 0usize..(32 * 8),
    ) {
        let signer = TokenSigner::new(secrets);
        let token = signer.token(user);
        prop_assert_eq!(token.len(), TOKEN_CHARS);
        prop_assert_eq!(signer.verify(&token), Ok(user));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(signer.verify(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
    }

    #[test]
    fn a_token_from_another_secret_is_forged(user in any::<u128>().prop_map(Uuid::from_u128)) {
        let ours = TokenSigner::new(vec!["ours".into()]);
        let theirs = TokenSigner::new(vec!["theirs".into()]);
        prop_assert_eq!(ours.verify(&theirs.token(user)), Err(TokenError::Forged));
    }

    #[test]
    fn svix_signatures_never_panic_and_only_the_signed_body_passes(
        body in prop::collection::vec(any::<u8>(), 0..256),
        id in ".{0,24}",
        timestamp in prop_oneof![".{0,12}", "-?[0-9]{1,20}"],
        signature in prop_oneof![".{0,64}", "(v1,[A-Za-z0-9+/=]{0,48} ?){0,3}"],
        secret in prop_oneof![
            ".{0,24}",
            prop::collection::vec(any::<u8>(), 1..32)
                .prop_map(|key| format!("whsec_{}", STANDARD.encode(key))),
        ],
        now in any::<i64>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let headers = SvixHeaders { id: Some(&id), timestamp: Some(&timestamp), signature: Some(&signature) };
        prop_assert!(verify_svix(&body, headers, &secret, now).is_err());
        let Ok(signed) = sign_svix(&body, &id, now, &secret) else {
            return Ok(());
        };
        let stamp = now.to_string();
        let headers = SvixHeaders { id: Some(&id), timestamp: Some(&stamp), signature: Some(&signed) };
        prop_assert_eq!(verify_svix(&body, headers, &secret, now), Ok(()));
        if !body.is_empty() {
            let mut tampered = body.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 1;
            prop_assert_eq!(verify_svix(&tampered, headers, &secret, now), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn any_names_render_escaped_with_a_one_line_subject(
        full_name in name(),
        workspace in name(),
        numbers in any::<bool>(),
    ) {
        let templates = Templates::new();
        let first = format!("{MARKUP}{}", first_name(Some(&full_name)));
        let workspace = format!("{workspace}{MARKUP}");
        let context = personalisation(first, workspace, numbers);
        for campaign in Campaign::ALL {
            let rendered = templates.render(campaign, &context).unwrap();
            prop_assert!(!rendered.html.contains(MARKUP), "{}: raw markup in HTML", campaign);
            prop_assert!(rendered.text.contains(MARKUP), "{}: plain text keeps what was typed", campaign);
            prop_assert!(
                !rendered.subject.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
                "{}: {:?}", campaign, rendered.subject
            );
        }
    }

    #[test]
    fn first_names_are_one_word(full_name in name()) {
        let first = first_name(Some(&full_name));
        prop_assert!(!first.is_empty());
        prop_assert!(!first.chars().any(char::is_whitespace));
    }
}
