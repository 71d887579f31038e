//! Money on the wire: the platforms send amounts as decimal strings, never as floats, so
//! the stand-ins keep cents as integers and format them only at the edge.

/// `1234` cents → `"12.34"`.
pub(crate) fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// `1230` cents → `"12.3"`, `1200` → `"12"` (Meta trims trailing zeros).
pub(crate) fn money_trimmed(cents: i64) -> String {
    let text = money(cents);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_formatted_as_the_platforms_do() {
        assert_eq!(money(1234), "12.34");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-250), "-2.50");
        assert_eq!(money_trimmed(1230), "12.3");
        assert_eq!(money_trimmed(1200), "12");
        assert_eq!(money_trimmed(5), "0.05");
        assert_eq!(money_trimmed(0), "0");
    }
}
