//! The router itself and what a lookup returns.

use std::collections::HashMap;
use std::fmt;

use crate::pattern;
use crate::{Allow, Method, RouteError};

/// A table of routes: patterns, each with values registered per method.
///
/// `T` is whatever the caller wants back from a lookup, typically a handler.
/// Register with [`route`](Router::route) and [`any`](Router::any), then look
/// requests up with [`at`](Router::at). See the [crate docs](crate) for the
/// pattern syntax.
pub struct Router<T> {
    /// matchit tree mapping each distinct pattern to an index in `entries`.
    tree: matchit::Router<usize>,
    /// One entry per distinct pattern (in matchit syntax), in registration order.
    entries: Vec<Entry<T>>,
    /// Pattern in matchit syntax → index in `entries`.
    by_pattern: HashMap<String, usize>,
}

/// Everything registered on one pattern.
#[derive(Clone)]
struct Entry<T> {
    /// The pattern in matchit syntax.
    matchit: String,
    /// Registrations in the order they were made; at most one per method and
    /// one for "any".
    slots: Vec<Slot<T>>,
}

/// One registration: a method (or any) and its value.
#[derive(Clone)]
struct Slot<T> {
    /// `None` for a route registered with [`Router::any`].
    method: Option<Method>,
    /// The pattern as the user wrote it for this registration.
    pattern: Box<str>,
    value: T,
}

impl<T> Entry<T> {
    /// The methods explicitly registered here, plus `HEAD` when `GET` is.
    fn allow(&self) -> Allow {
        let mut allow = Allow::EMPTY;
        for method in self.slots.iter().filter_map(|slot| slot.method) {
            allow.insert(method);
            if method == Method::Get {
                allow.insert(Method::Head);
            }
        }
        allow
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            tree: matchit::Router::new(),
            entries: Vec::new(),
            by_pattern: HashMap::new(),
        }
    }
}

impl<T: Clone> Clone for Router<T> {
    fn clone(&self) -> Self {
        Router {
            tree: self.tree.clone(),
            entries: self.entries.clone(),
            by_pattern: self.by_pattern.clone(),
        }
    }
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .routes()
            .map(|r| {
                let method = r.method.map_or("ANY", Method::as_str);
                format!("{method} {}", r.pattern)
            })
            .collect();
        f.debug_struct("Router")
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

impl<T> Router<T> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `value` for requests with `method` on paths matching `pattern`.
    ///
    /// Several methods may share a pattern. Registering the same method on the
    /// same pattern twice is a [`RouteError::Duplicate`]; a pattern that
    /// overlaps an existing one ambiguously is a [`RouteError::Conflict`]; a
    /// malformed pattern is a [`RouteError::Invalid`]. A failed call leaves
    /// the router unchanged.
    ///
    /// ```
    /// use verb_router::{Method, RouteError, Router};
    ///
    /// let mut router = Router::new();
    /// router.route(Method::Get, "/users/:id", "show user")?;
    /// router.route(Method::Put, "/users/:id", "replace user")?;
    ///
    /// let err = router.route(Method::Get, "/users/:id", "again").unwrap_err();
    /// assert_eq!(err.to_string(), "GET /users/:id is already registered");
    ///
    /// let err = router.route(Method::Get, "/users/:name", "clash").unwrap_err();
    /// assert!(matches!(err, RouteError::Conflict { .. }));
    ///
    /// let found = router.at("PUT", "/users/7").unwrap();
    /// assert_eq!(*found.value, "replace user");
    /// # Ok::<(), RouteError>(())
    /// ```
    pub fn route(&mut self, method: Method, pattern: &str, value: T) -> Result<(), RouteError> {
        self.register(Some(method), pattern, value)
    }

    /// Registers `value` for every method on paths matching `pattern`, like
    /// Express's `app.all`.
    ///
    /// Methods registered individually on the same pattern take precedence;
    /// the `any` value serves all the others, including methods [`Method`]
    /// does not list (such as `PROPFIND`). Registering `any` twice on one
    /// pattern is a [`RouteError::Duplicate`].
    ///
    /// ```
    /// use verb_router::{Method, Router};
    ///
    /// let mut router = Router::new();
    /// router.any("/proxy/*rest", "proxy")?;
    /// router.route(Method::Get, "/proxy/*rest", "cached")?;
    ///
    /// assert_eq!(*router.at("GET", "/proxy/a/b").unwrap().value, "cached");
    /// assert_eq!(*router.at("POST", "/proxy/a/b").unwrap().value, "proxy");
    /// assert_eq!(*router.at("PROPFIND", "/proxy/a").unwrap().value, "proxy");
    /// # Ok::<(), verb_router::RouteError>(())
    /// ```
    pub fn any(&mut self, pattern: &str, value: T) -> Result<(), RouteError> {
        self.register(None, pattern, value)
    }

    /// Looks up the value for a request's method and path.
    ///
    /// `method` is the request's method token exactly as received (matching
    /// is case-sensitive); `path` is the request path without query string.
    /// No decoding is done: parameters are returned as raw slices of `path`,
    /// so `%20` stays `%20`, and the caller percent-decodes them if needed.
    ///
    /// When the path matches a pattern, the value registered for `method`
    /// wins; a `HEAD` request with no explicit `HEAD` route falls back to the
    /// `GET` value; otherwise the [`any`](Router::any) value is used. If none
    /// applies the result is [`Miss::MethodNotAllowed`] with the methods the
    /// path does accept. A path matching no pattern gives [`Miss::NotFound`].
    ///
    /// Any input is accepted without panicking, however malformed.
    ///
    /// This router adds no heap allocation to a lookup. matchit, underneath,
    /// allocates in two cases only: a match capturing more than three
    /// parameters, and a path walking through a static segment that shares
    /// its position with a parameter (such as `/users/me` next to
    /// `/users/:id`), where it records a fallback point.
    ///
    /// ```
    /// use verb_router::{Method, Miss, Router};
    ///
    /// let mut router = Router::new();
    /// router.route(Method::Get, "/files/:name.txt", 1)?;
    ///
    /// let found = router.at("GET", "/files/notes%20v2.txt").unwrap();
    /// assert_eq!(found.params.get("name"), Some("notes%20v2"));
    /// assert_eq!(found.pattern, "/files/:name.txt");
    ///
    /// // HEAD is served by the GET route.
    /// assert!(router.at("HEAD", "/files/a.txt").is_ok());
    ///
    /// match router.at("DELETE", "/files/a.txt") {
    ///     Err(Miss::MethodNotAllowed { allow }) => assert_eq!(allow.to_string(), "GET, HEAD"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// assert_eq!(router.at("GET", "/files/a.pdf").unwrap_err(), Miss::NotFound);
    /// # Ok::<(), verb_router::RouteError>(())
    /// ```
    pub fn at<'r, 'p>(&'r self, method: &str, path: &'p str) -> Result<Match<'r, 'p, T>, Miss> {
        let Ok(found) = self.tree.at(path) else {
            return Err(Miss::NotFound);
        };
        let Some(entry) = self.entries.get(*found.value) else {
            return Err(Miss::NotFound);
        };

        let wanted = Method::from_bytes(method.as_bytes());
        let mut exact = None;
        let mut get = None;
        let mut any = None;
        for slot in &entry.slots {
            match slot.method {
                Some(m) if Some(m) == wanted => {
                    exact = Some(slot);
                    break;
                }
                Some(Method::Get) => get = Some(slot),
                None => any = Some(slot),
                Some(_) => {}
            }
        }
        let head_via_get = if wanted == Some(Method::Head) {
            get
        } else {
            None
        };

        match exact.or(head_via_get).or(any) {
            Some(slot) => Ok(Match {
                value: &slot.value,
                params: Params {
                    inner: found.params,
                },
                pattern: &slot.pattern,
            }),
            None => Err(Miss::MethodNotAllowed {
                allow: entry.allow(),
            }),
        }
    }

    /// Every registration, in the order the patterns were first used.
    ///
    /// Registrations sharing a pattern are listed together, in the order they
    /// were made.
    ///
    /// ```
    /// use verb_router::{Method, Router};
    ///
    /// let mut router = Router::new();
    /// router.route(Method::Get, "/", ())?;
    /// router.any("/ws/:room", ())?;
    /// router.route(Method::Post, "/", ())?;
    ///
    /// let listed: Vec<String> = router
    ///     .routes()
    ///     .map(|r| format!("{} {}", r.method.map_or("ANY", Method::as_str), r.pattern))
    ///     .collect();
    /// assert_eq!(listed, ["GET /", "POST /", "ANY /ws/:room"]);
    /// # Ok::<(), verb_router::RouteError>(())
    /// ```
    pub fn routes(&self) -> impl Iterator<Item = RouteInfo<'_>> {
        self.entries.iter().flat_map(|entry| {
            entry.slots.iter().map(|slot| RouteInfo {
                method: slot.method,
                pattern: &slot.pattern,
            })
        })
    }

    /// Shared body of [`route`](Router::route) and [`any`](Router::any).
    fn register(
        &mut self,
        method: Option<Method>,
        pattern: &str,
        value: T,
    ) -> Result<(), RouteError> {
        let translated = pattern::to_matchit(pattern).map_err(|reason| RouteError::Invalid {
            route: pattern.to_owned(),
            reason,
        })?;
        let slot = Slot {
            method,
            pattern: pattern.into(),
            value,
        };

        if let Some(&index) = self.by_pattern.get(&translated) {
            let entry = &mut self.entries[index];
            if entry.slots.iter().any(|s| s.method == method) {
                return Err(RouteError::Duplicate {
                    method,
                    route: pattern.to_owned(),
                });
            }
            entry.slots.push(slot);
            return Ok(());
        }

        let index = self.entries.len();
        if let Err(err) = self.tree.insert(translated.as_str(), index) {
            return Err(self.insert_error(pattern, &translated, err));
        }
        self.by_pattern.insert(translated.clone(), index);
        self.entries.push(Entry {
            matchit: translated,
            slots: vec![slot],
        });
        Ok(())
    }

    /// Turns a matchit insertion error into ours, naming routes as written.
    fn insert_error(
        &self,
        pattern: &str,
        translated: &str,
        err: matchit::InsertError,
    ) -> RouteError {
        match err {
            matchit::InsertError::Conflict { with } => RouteError::Conflict {
                route: pattern.to_owned(),
                existing: self.find_conflicting(translated, &with),
            },
            other => RouteError::Invalid {
                route: pattern.to_owned(),
                reason: match other {
                    matchit::InsertError::InvalidParamSegment => {
                        "only one parameter is allowed per segment".to_owned()
                    }
                    matchit::InsertError::InvalidCatchAll => {
                        "a catch-all must be at the end of the pattern".to_owned()
                    }
                    _ => "malformed parameter".to_owned(),
                },
            },
        }
    }

    /// Finds the user-written pattern that `translated` conflicts with.
    ///
    /// `with` is the route matchit blamed, in matchit syntax with escapes
    /// removed. matchit builds that name by walking its tree, so it can be a
    /// neighbour of the real culprit; routes that clash with the new one on
    /// their own are therefore preferred, and `with` only breaks ties.
    fn find_conflicting(&self, translated: &str, with: &str) -> String {
        let named =
            |entry: &Entry<T>| entry.matchit == with || pattern::unescape(&entry.matchit) == with;
        let clashing: Vec<&Entry<T>> = self
            .entries
            .iter()
            .filter(|entry| {
                let mut pair = matchit::Router::new();
                pair.insert(entry.matchit.as_str(), ()).is_ok()
                    && matches!(
                        pair.insert(translated, ()),
                        Err(matchit::InsertError::Conflict { .. })
                    )
            })
            .collect();

        let culprit = clashing
            .iter()
            .copied()
            .find(|e| named(e))
            .or_else(|| clashing.first().copied())
            .or_else(|| self.entries.iter().find(|e| named(e)));
        match culprit {
            Some(entry) => entry.slots[0].pattern.to_string(),
            None => with.to_owned(),
        }
    }
}

/// A successful lookup: the value for the request plus the path parameters.
#[derive(Debug)]
pub struct Match<'r, 'p, T> {
    /// The value registered for the matched pattern and method.
    pub value: &'r T,
    /// Parameters captured from the path.
    pub params: Params<'r, 'p>,
    /// The matched pattern, as written when this value was registered.
    pub pattern: &'r str,
}

/// Parameters captured from a path by a [`Match`].
///
/// Names borrow from the router (`'r`), values from the looked-up path (`'p`).
/// Values are the raw text of the path: nothing is percent-decoded, so the
/// caller decodes them if it needs to. A catch-all value holds everything
/// after its prefix, slashes included, without a leading slash.
#[derive(Debug, Clone)]
pub struct Params<'r, 'p> {
    inner: matchit::Params<'r, 'p>,
}

impl<'r, 'p> Params<'r, 'p> {
    /// The value of the parameter called `name`, if the pattern has one.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.inner.get(name)
    }

    /// All `(name, value)` pairs, in the order they appear in the pattern.
    pub fn iter(&self) -> impl Iterator<Item = (&'r str, &'p str)> + '_ {
        self.inner.iter()
    }

    /// How many parameters were captured.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no parameter was captured (the pattern was fully static).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// Why a lookup found nothing to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    /// No pattern matches the path (HTTP 404).
    #[error("no route matches the path")]
    NotFound,
    /// A pattern matches the path but nothing is registered for the method
    /// (HTTP 405).
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed {
        /// The methods the path accepts, for the response's `Allow` header.
        /// Includes `HEAD` whenever `GET` is registered.
        allow: Allow,
    },
}

/// One registration, as listed by [`Router::routes`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo<'r> {
    /// The registered method; `None` for [`Router::any`].
    pub method: Option<Method>,
    /// The pattern as the user wrote it.
    pub pattern: &'r str,
}
