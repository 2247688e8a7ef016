//! Closed sets of words the API and the catalog use (statuses, kinds,
//! operations, classes) as enums: [`words!`] gives each value its one
//! spelling, which serde writes and reads, `as_str` gives the catalog's
//! text columns and logs, and `FromStr` reads back, so the three cannot
//! disagree.

use std::fmt;

/// A word that is not one of an enum's values (read back from a catalog
/// column, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// The enum's name.
    pub what: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a {}", self.word, self.what)
    }
}

impl std::error::Error for UnknownWord {}

/// `words! { /// doc  pub enum Name { /// doc  Variant = "word", … } }`: an
/// enum whose values are written (serde, `as_str`, `Display`) and read
/// (serde, `FromStr`) as exactly those words. `ALL` lists the values in
/// order; derived `Ord` follows that order.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The word on the wire and in the catalog.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::words::UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::words::UnknownWord {
                        what: stringify!($name),
                        word: s.to_owned(),
                    })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    words! {
        /// A test set.
        pub enum Sample {
            One = "one",
            /// With an underscore.
            NotTwo = "not_two",
        }
    }

    #[test]
    fn serde_as_str_and_from_str_agree() {
        for v in Sample::ALL {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, v.as_str());
            assert_eq!(serde_json::from_value::<Sample>(json).unwrap(), *v);
            assert_eq!(v.as_str().parse::<Sample>(), Ok(*v));
            assert_eq!(v.to_string(), v.as_str());
        }
        let e = "two".parse::<Sample>().unwrap_err();
        assert_eq!(e.to_string(), r#""two" is not a Sample"#);
        assert!(serde_json::from_str::<Sample>(r#""One""#).is_err());
        assert!(Sample::One < Sample::NotTwo);
    }
}
