//! The owner of a directory target's files ([`crate::env::REPOSITORY_OWNER`]), written
//! `UID:GID` as `chown` takes it.

use std::fmt;
use std::str::FromStr;

/// A user and group, by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepositoryOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A value that is not `UID:GID` with two decimal numbers (the text as given).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: expected UID:GID, two decimal numbers, e.g. 65532:65532")]
pub struct NotAnOwner(pub String);

impl FromStr for RepositoryOwner {
    type Err = NotAnOwner;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || NotAnOwner(text.to_owned());
        let (uid, gid) = text.split_once(':').ok_or_else(refuse)?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse());
            }
            s.parse::<u32>().map_err(|_| refuse())
        };
        Ok(Self {
            uid: number(uid)?,
            gid: number(gid)?,
        })
    }
}

impl fmt::Display for RepositoryOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_other_text_is_refused() {
        let owner: RepositoryOwner = "65532:65533".parse().unwrap();
        assert_eq!(owner, RepositoryOwner { uid: 65532, gid: 65533 });
        assert_eq!(owner.to_string().parse::<RepositoryOwner>().unwrap(), owner);
        for bad in ["", "65532", ":1", "1:", "a:b", "-1:2", "1:2:3", "+1:2", "4294967296:1"] {
            let err = bad.parse::<RepositoryOwner>().unwrap_err();
            assert_eq!(err, NotAnOwner(bad.to_owned()), "{bad}");
        }
    }
}
