//! Property tests: whatever Stripe — or someone pretending to be Stripe — sends, the billing
//! agent's parsers, signature check and money rules answer `Ok` or a typed error, never a
//! panic (a panic would end the request, and without the edge's catch the process).
//!
//! The JSON strategy mixes Stripe's own field names with arbitrary keys, and extreme numbers
//! (the largest integers, floats far beyond an exact decimal, 40-digit numeric strings) with
//! arbitrary text (`\u0000`, emoji), so the shapes the code looks into are reached often.

use billing::{BillingError, StripeEvent, ordering, revenue};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

const FIELDS: &[&str] = &[
    "id",
    "object",
    "type",
    "created",
    "data",
    "status",
    "items",
    "price",
    "plan",
    "quantity",
    "unit_amount",
    "unit_amount_decimal",
    "recurring",
    "interval",
    "interval_count",
    "discount",
    "coupon",
    "percent_off",
    "amount_off",
    "previous_attributes",
    "amount_refunded",
    "amount_paid",
    "deleted",
    "metadata",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// Numbers and numeric strings at and beyond what an exact decimal holds.
fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MAX, i64::MIN, 0, 1, -1, 999_999_999_999])
            .prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        "-?[0-9]{0,40}(\\.[0-9]{0,30})?".prop_map(Value::String),
        Just(Value::String("79228162514264337593543950335".into())),
        Just(Value::String("1e400".into())),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        amount(),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(vec![
            "event",
            "subscription",
            "invoice",
            "charge",
            "active",
            "past_due",
            "paid",
            "month",
            "year",
            "week",
            "day",
            "a\u{0}b",
            "🦀",
        ])
        .prop_map(|text| Value::String(text.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Something shaped like a subscription, with arbitrary amounts in every money field.
fn subscription() -> impl Strategy<Value = Value> {
    let item = (amount(), amount(), amount(), json()).prop_map(|(unit, quantity, count, extra)| {
        json!({"quantity": quantity, "price": {"unit_amount_decimal": unit, "unit_amount": extra,
            "recurring": {"interval": "day", "interval_count": count}}})
    });
    (
        prop::sample::select(vec!["active", "past_due", "trialing"]),
        prop::collection::vec(item, 0..4),
        amount(),
        amount(),
    )
        .prop_map(|(status, items, percent, amount_off)| {
            let coupon = if percent.is_string() {
                json!({"percent_off": percent})
            } else {
                json!({"amount_off": amount_off})
            };
            json!({"object": "subscription", "status": status, "items": {"data": items},
                "discount": {"coupon": coupon}})
        })
}

/// An event envelope whose every field may be wrong.
fn event() -> impl Strategy<Value = Value> {
    (json(), json(), json(), json(), json(), any::<bool>()).prop_map(
        |(id, kind, created, object, previous, is_event)| {
            json!({"object": if is_event { json!("event") } else { previous.clone() },
                "id": id, "type": kind, "created": created,
                "data": {"object": object, "previous_attributes": previous}})
        },
    )
}

fn decimal() -> impl Strategy<Value = Decimal> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        0u32..=28,
    )
        .prop_map(|(lo, mid, hi, negative, scale)| {
            Decimal::from_parts(lo, mid, hi, negative, scale)
        })
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_parse_or_are_malformed(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let parsed = StripeEvent::parse(&bytes);
        prop_assert!(matches!(parsed, Ok(_) | Err(BillingError::Malformed(_))));
    }

    #[test]
    fn arbitrary_json_parses_into_a_usable_event_or_is_malformed(payload in prop_oneof![json(), event()]) {
        let bytes = serde_json::to_vec(&payload).unwrap();
        match StripeEvent::parse(&bytes) {
            Ok(event) => {
                prop_assert!(event.object().is_object());
                prop_assert!(event.id.len() <= billing::MAX_ID_BYTES);
            }
            Err(error) => prop_assert!(matches!(error, BillingError::Malformed(_)), "{error}"),
        }
    }

    #[test]
    fn mrr_is_an_exact_non_negative_amount_or_an_overflow(subscription in prop_oneof![subscription(), json()]) {
        if let Ok(mrr) = revenue::mrr(&subscription) {
            prop_assert!(mrr >= Decimal::ZERO);
            prop_assert!(mrr.scale() <= 4);
        }
    }

    #[test]
    fn classify_names_every_move_and_only_moves(before in decimal(), after in decimal(), ever in any::<bool>()) {
        prop_assert_eq!(revenue::classify(before, after, ever).is_none(), before == after);
    }

    #[test]
    fn is_newer_decides_any_two_objects_the_same_way_each_time(
        (a, b) in (json(), json()),
        (previous_a, previous_b) in (json(), json()),
        (created_a, created_b) in (any::<i64>(), prop_oneof![Just(0i64), any::<i64>()]),
        (id_a, id_b) in (".{0,8}", ".{0,8}"),
        deletes in any::<(bool, bool)>(),
    ) {
        // Same second far more often than chance would give, so the later rules are reached.
        let created_b = if created_b == 0 { created_a } else { created_b };
        let version = |event_id, created, object, previous_attributes, deletes| ordering::Version {
            event_id, created, object, previous_attributes, deletes,
        };
        let incoming = version(&id_a, created_a, &a, Some(&previous_a), deletes.0);
        let stored = version(&id_b, created_b, &b, Some(&previous_b), deletes.1);
        let first = ordering::is_newer(&incoming, &stored);
        prop_assert_eq!(first, ordering::is_newer(&incoming, &stored));
        prop_assert!(!ordering::is_newer(&incoming, &incoming), "an event is never newer than itself");
    }

    #[test]
    fn stripe_signatures_never_panic_and_only_the_signed_body_passes(
        body in prop::collection::vec(any::<u8>(), 0..256),
        header in prop_oneof![".{0,64}", "(t=-?[0-9]{1,20}|v1=[0-9a-f]{0,70}|[a-z0-9]{0,3}=.{0,6})(,(t=-?[0-9]{1,20}|v1=[0-9a-f]{0,70}|.{0,6})){0,4}"],
        secret in ".{0,24}",
        now in any::<i64>(),
        flip in any::<prop::sample::Index>(),
    ) {
        prop_assert!(shared::webhook::verify_stripe(&body, Some(&header), &[&secret], now).is_err());
        let signed = shared::webhook::sign_stripe(&body, &secret, now);
        prop_assert_eq!(shared::webhook::verify_stripe(&body, Some(&signed), &[&secret], now), Ok(()));
        if !body.is_empty() {
            let mut tampered = body.clone();
            let at = flip.index(tampered.len());
            tampered[at] ^= 1;
            prop_assert_eq!(
                shared::webhook::verify_stripe(&tampered, Some(&signed), &[&secret], now),
                Err(shared::webhook::SignatureError::Mismatch)
            );
        }
    }
}
