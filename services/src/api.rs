//! The two API versions as data: which package and service each is, and the version its
//! implementation reports. Everything that has to pick "v1 or v2" (clients, deployments, the
//! command line) names one of these instead of spelling out strings.

use std::fmt;
use std::str::FromStr;

/// Version of the v1 implementation as the router knows it.
pub const V1_VERSION: semver::Version = semver::Version::new(1, 0, 0);
/// Version of the v2 implementation as the router knows it, and as v2 replies report it.
pub const V2_VERSION: semver::Version = semver::Version::new(2, 0, 0);
/// The API packages a router of this API manages.
pub const API_PACKAGES: [&str; 2] = ["increment.v1", "increment.v2"];

/// One version of the Incrementer API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// `increment.v1`: `value + 1`.
    V1,
    /// `increment.v2`: `value + step`, with a request id and the serving version in replies.
    V2,
}

impl Api {
    /// Both versions, oldest first.
    pub const ALL: [Api; 2] = [Api::V1, Api::V2];

    /// Short name: `v1` or `v2`.
    pub fn name(self) -> &'static str {
        match self {
            Api::V1 => "v1",
            Api::V2 => "v2",
        }
    }

    /// The protobuf package, such as `increment.v1`.
    pub fn package(self) -> &'static str {
        API_PACKAGES[self as usize]
    }

    /// The full gRPC service name, as used in paths and health checks.
    pub fn service(self) -> &'static str {
        match self {
            Api::V1 => crate::V1_SERVICE,
            Api::V2 => crate::V2_SERVICE,
        }
    }

    /// The version this repository's implementation of the API has.
    pub fn version(self) -> semver::Version {
        match self {
            Api::V1 => V1_VERSION,
            Api::V2 => V2_VERSION,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Api {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Api::ALL
            .into_iter()
            .find(|api| api.name() == text)
            .ok_or_else(|| format!("{text:?} is not an API version; expected v1 or v2"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_say_what_is_expected() {
        for api in Api::ALL {
            assert_eq!(api.name().parse::<Api>(), Ok(api));
            assert!(api.service().starts_with(api.package()));
        }
        assert!(
            "v3".parse::<Api>()
                .unwrap_err()
                .contains("expected v1 or v2")
        );
    }
}
