//! HTTP methods and sets of them.

use std::fmt;
use std::str::FromStr;

/// HTTP methods a route can be registered for.
///
/// The variants are ordered as listed here; that order is also the order in
/// which [`Allow`] lists methods. Methods outside this list (for example
/// WebDAV's `PROPFIND`) cannot be registered individually, but requests using
/// them still reach routes registered with [`Router::any`](crate::Router::any).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`: fetch a representation of the resource.
    Get,
    /// `HEAD`: like `GET`, but the response carries no body.
    Head,
    /// `POST`: submit data to the resource.
    Post,
    /// `PUT`: replace the resource.
    Put,
    /// `PATCH`: modify part of the resource.
    Patch,
    /// `DELETE`: remove the resource.
    Delete,
    /// `OPTIONS`: ask which communication options the resource supports.
    Options,
    /// `CONNECT`: open a tunnel to the server named by the target.
    Connect,
    /// `TRACE`: echo the request back, for diagnostics.
    Trace,
}

impl Method {
    /// Every method this type knows, in its sort order.
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    /// The method's token as it appears on the wire, e.g. `"GET"`.
    ///
    /// ```
    /// use verb_router::Method;
    ///
    /// assert_eq!(Method::Patch.as_str(), "PATCH");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }

    /// Recognises a method token given as raw bytes.
    ///
    /// Matching is exact and case-sensitive, as HTTP method tokens are:
    /// `b"GET"` is [`Method::Get`], while `b"get"` is not a known method.
    /// Returns `None` for anything this type does not list.
    ///
    /// ```
    /// use verb_router::Method;
    ///
    /// assert_eq!(Method::from_bytes(b"DELETE"), Some(Method::Delete));
    /// assert_eq!(Method::from_bytes(b"delete"), None);
    /// assert_eq!(Method::from_bytes(b"PROPFIND"), None);
    /// ```
    pub const fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(match bytes {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"PATCH" => Method::Patch,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => return None,
        })
    }

    /// This method's bit in an [`Allow`] set.
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownMethod;

    /// Parses an exact, uppercase method token such as `"GET"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::from_bytes(s.as_bytes()).ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// Error returned when parsing a [`Method`] from a string it does not know.
///
/// Holds the rejected text; see [`UnknownMethod::as_str`].
///
/// ```
/// use verb_router::Method;
///
/// let err = "get".parse::<Method>().unwrap_err();
/// assert_eq!(err.as_str(), "get");
/// assert_eq!(err.to_string(), "unknown http method `get`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown http method `{0}`")]
pub struct UnknownMethod(String);

impl UnknownMethod {
    /// The text that was not recognised as a method.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A set of methods, as sent in an HTTP `Allow` header.
///
/// Found in [`Miss::MethodNotAllowed`](crate::Miss::MethodNotAllowed) when a
/// path exists but not for the request's method. The set is always sorted in
/// [`Method`] order and never holds a method twice. It is a small `Copy`
/// value; building and inspecting it does not allocate.
///
/// ```
/// use verb_router::{Allow, Method};
///
/// let allow: Allow = [Method::Post, Method::Get, Method::Head, Method::Get]
///     .into_iter()
///     .collect();
/// assert_eq!(allow.header_value(), "GET, HEAD, POST");
/// assert!(allow.contains(Method::Post));
/// assert!(!allow.contains(Method::Delete));
/// assert_eq!(allow.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allow {
    bits: u16,
}

impl Allow {
    /// The empty set.
    pub(crate) const EMPTY: Allow = Allow { bits: 0 };

    /// Adds `method` to the set (no effect if it is already there).
    pub(crate) fn insert(&mut self, method: Method) {
        self.bits |= method.bit();
    }

    /// Whether `method` is in the set.
    pub fn contains(&self, method: Method) -> bool {
        self.bits & method.bit() != 0
    }

    /// How many methods the set holds.
    pub fn len(&self) -> usize {
        self.bits.count_ones() as usize
    }

    /// Whether the set holds no method at all.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The methods in the set, in [`Method`] order.
    pub fn iter(&self) -> impl Iterator<Item = Method> + use<> {
        let this = *self;
        Method::ALL.into_iter().filter(move |m| this.contains(*m))
    }

    /// The set formatted for an HTTP `Allow` header, e.g. `"GET, HEAD, POST"`.
    ///
    /// Same text as the [`Display`](fmt::Display) implementation.
    pub fn header_value(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, method) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(method.as_str())?;
        }
        Ok(())
    }
}

impl FromIterator<Method> for Allow {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        let mut allow = Allow::EMPTY;
        for method in iter {
            allow.insert(method);
        }
        allow
    }
}

impl Extend<Method> for Allow {
    fn extend<I: IntoIterator<Item = Method>>(&mut self, iter: I) {
        for method in iter {
            self.insert(method);
        }
    }
}
