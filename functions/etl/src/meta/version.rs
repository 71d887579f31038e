//! The Marketing API version every Meta request names (`META_API_VERSION`, default
//! [`DEFAULT_API_VERSION`]). Meta serves a version for about a year after the next one
//! ships and then refuses it, so a configured version that has already expired is refused
//! when the function starts, not on its first request.
//!
//! December 2026: v27.0 (released 2026-11-04), v26.0 and v25.0 (expires 2027-02-23) are
//! served; v24.0 expired on 2026-11-10.

use std::fmt;
use std::str::FromStr;

/// The version requests name unless `META_API_VERSION` says otherwise.
pub const DEFAULT_API_VERSION: ApiVersion = ApiVersion {
    major: 27,
    minor: 0,
};

/// The oldest major version Meta still serves; older ones answer an error.
pub const OLDEST_SERVED_MAJOR: u32 = 25;

/// A Graph API version, `v{major}.{minor}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    major: u32,
    minor: u32,
}

impl ApiVersion {
    pub fn major(self) -> u32 {
        self.major
    }
}

impl Default for ApiVersion {
    fn default() -> Self {
        DEFAULT_API_VERSION
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "v{}.{}", self.major, self.minor)
    }
}

impl FromStr for ApiVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || format!("{text:?} is not a Graph API version like v27.0");
        let (major, minor) = text
            .trim()
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(malformed)?;
        let number = |part: &str| {
            (!part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
                .ok_or_else(malformed)
        };
        let version = ApiVersion {
            major: number(major)?,
            minor: number(minor)?,
        };
        if version.major < OLDEST_SERVED_MAJOR {
            return Err(format!(
                "{version} is no longer served by Meta (the oldest served is v{OLDEST_SERVED_MAJOR}.0)"
            ));
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn served_versions_parse_and_expired_ones_are_refused() {
        assert_eq!("v27.0".parse::<ApiVersion>(), Ok(DEFAULT_API_VERSION));
        assert_eq!("v25.0".parse::<ApiVersion>().unwrap().to_string(), "v25.0");
        assert!(
            "v24.0"
                .parse::<ApiVersion>()
                .unwrap_err()
                .contains("no longer")
        );
        assert!("v21.0".parse::<ApiVersion>().is_err());
        for malformed in [
            "27.0",
            "v27",
            "v27.",
            "v.0",
            "vx.0",
            "v27.0/../x",
            "v9999.0",
            "",
        ] {
            assert!(malformed.parse::<ApiVersion>().is_err(), "{malformed}");
        }
        assert_eq!(ApiVersion::default().to_string(), "v27.0");
    }

    proptest! {
        #[test]
        fn any_text_is_a_version_or_an_error(text in ".{0,12}") {
            if let Ok(version) = text.parse::<ApiVersion>() {
                prop_assert!(version.major() >= OLDEST_SERVED_MAJOR);
                prop_assert_eq!(version.to_string().parse::<ApiVersion>(), Ok(version));
            }
        }
    }
}
