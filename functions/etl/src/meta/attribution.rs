//! Which attribution windows a connection's purchases are counted in, sent to Meta as
//! `action_attribution_windows`.
//!
//! A connection may choose its own (`connections.attribution_windows`); without a choice it
//! gets [`DEFAULT_WINDOWS`]. Since 2026-01-12 Meta no longer returns the view-through
//! windows `7d_view` and `28d_view`: a stored choice naming them (or anything Meta does not
//! serve) keeps only the windows Meta serves, and falls back to the default when none is
//! left, so an old setting never makes a run ask for data that cannot come.

/// The windows Meta serves, in the order they are sent.
pub const SERVED_WINDOWS: [&str; 5] = ["1d_click", "7d_click", "28d_click", "1d_ev", "1d_view"];

/// The windows Meta stopped returning on 2026-01-12.
pub const RETIRED_WINDOWS: [&str; 2] = ["7d_view", "28d_view"];

/// A connection's windows when it has not chosen (Meta's own default setting).
pub const DEFAULT_WINDOWS: [&str; 2] = ["7d_click", "1d_view"];

/// The windows to request for a connection's stored choice: the served ones it names, in
/// [`SERVED_WINDOWS`] order, each once; [`DEFAULT_WINDOWS`] when it names none.
pub fn windows(stored: Option<&[String]>) -> Vec<&'static str> {
    let chosen: Vec<&'static str> = SERVED_WINDOWS
        .into_iter()
        .filter(|served| {
            stored.is_some_and(|names| names.iter().any(|name| name.trim() == *served))
        })
        .collect();
    if let Some(ignored) = stored.map(|names| {
        names
            .iter()
            .filter(|name| !SERVED_WINDOWS.contains(&name.trim()))
            .collect::<Vec<_>>()
    }) && !ignored.is_empty()
    {
        tracing::warn!(
            ?ignored,
            "attribution windows Meta no longer serves are ignored"
        );
    }
    if chosen.is_empty() {
        DEFAULT_WINDOWS.to_vec()
    } else {
        chosen
    }
}

/// The parameter's value: a JSON list.
pub fn parameter(windows: &[&str]) -> String {
    serde_json::to_string(windows).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_connection_without_a_choice_gets_the_default() {
        assert_eq!(windows(None), ["7d_click", "1d_view"]);
        assert_eq!(windows(Some(&[])), ["7d_click", "1d_view"]);
        assert_eq!(parameter(&windows(None)), r#"["7d_click","1d_view"]"#);
    }

    #[test]
    fn retired_and_unknown_windows_are_dropped_and_served_ones_kept_once_in_order() {
        assert_eq!(
            windows(Some(&stored(&[
                "28d_click",
                "7d_view",
                "1d_click",
                "1d_click"
            ]))),
            ["1d_click", "28d_click"]
        );
        assert_eq!(
            windows(Some(&stored(&["7d_view", "28d_view"]))),
            DEFAULT_WINDOWS
        );
        assert_eq!(windows(Some(&stored(&["nonsense"]))), DEFAULT_WINDOWS);
        for retired in RETIRED_WINDOWS {
            assert!(!windows(Some(&stored(&[retired]))).contains(&retired));
        }
    }
}
