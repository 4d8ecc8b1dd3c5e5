//! Who is calling: the [`Authenticate`] hook and the shipped [`StaticTokens`].

use std::future::Future;
use std::pin::Pin;

use axum::http::{HeaderMap, Method, Uri, header};
use kaiju_rpc::Scope;
use subtle::ConstantTimeEq;

/// The caller a request runs as: the scope the RPC server checks methods against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name, if one is known (logged; not sent to methods yet).
    pub user: Option<String>,
    /// The scope the request runs at.
    pub scope: Scope,
}

impl Caller {
    /// An anonymous caller at [`Scope::Guest`].
    pub fn guest() -> Self {
        Self {
            user: None,
            scope: Scope::Guest,
        }
    }
}

/// What an [`Authenticate`] sees of a request (its body is not read yet).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// Every request header (`Authorization`, `Session-Id`, cookies, ...).
    pub headers: &'a HeaderMap,
}

impl RequestView<'_> {
    /// The `Authorization: Bearer <token>` token, if the header has one (the scheme in any
    /// letter case).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }
}

/// The future an [`Authenticate`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Caller> + Send + 'a>>;

/// Maps a request to the [`Caller`] it runs as. It never refuses a request: a missing, wrong
/// or expired credential runs at [`Scope::Guest`] (kaiju's rule), and a method above the
/// caller's scope answers "method not found" from the server. Asynchronous, so that a session
/// store (kaiju's Redis sessions) can be asked.
///
/// ```
/// use kaiju_http::{AuthFuture, Authenticate, Caller, RequestView};
/// use kaiju_rpc::Scope;
///
/// /// Every caller from the loopback proxy that sets `X-Internal: 1` is a system caller.
/// struct Internal;
/// impl Authenticate for Internal {
///     fn authenticate<'a>(&'a self, request: RequestView<'a>) -> AuthFuture<'a> {
///         let internal = request.headers.get("x-internal").is_some_and(|v| v == "1");
///         Box::pin(async move {
///             if internal { Caller { user: None, scope: Scope::System } } else { Caller::guest() }
///         })
///     }
/// }
/// ```
pub trait Authenticate: Send + Sync + 'static {
    /// The caller `request` runs as.
    fn authenticate<'a>(&'a self, request: RequestView<'a>) -> AuthFuture<'a>;
}

/// Everyone is a guest: the front's authenticator when none is given (kaiju's HTTP view calls
/// the server at GUEST).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestOnly;

impl Authenticate for GuestOnly {
    fn authenticate<'a>(&'a self, _: RequestView<'a>) -> AuthFuture<'a> {
        Box::pin(std::future::ready(Caller::guest()))
    }
}

/// Bearer tokens fixed in the settings, each with its user name and scope
/// (`Authorization: Bearer <token>`). Tokens are compared in constant time, every token
/// every time, so the answer's timing says nothing about how much of a token was right.
///
/// ```
/// use kaiju_http::StaticTokens;
/// use kaiju_rpc::Scope;
///
/// let tokens = StaticTokens::new()
///     .token("s3cret-ops", Some("ops"), Scope::System)
///     .token("s3cret-web", None, Scope::User);
/// assert_eq!(tokens.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    tokens: Vec<Token>,
}

#[derive(Clone)]
struct Token {
    secret: Vec<u8>,
    user: Option<String>,
    scope: Scope,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("StaticTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl StaticTokens {
    /// No tokens: everyone is a guest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token. An empty token is ignored (it would match an empty header).
    #[must_use]
    pub fn token(mut self, secret: impl Into<String>, user: Option<&str>, scope: Scope) -> Self {
        let secret: String = secret.into();
        if !secret.is_empty() {
            self.tokens.push(Token {
                secret: secret.into_bytes(),
                user: user.map(str::to_owned),
                scope,
            });
        }
        self
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller a bearer token is, if it is one of ours.
    pub fn lookup(&self, token: &str) -> Option<Caller> {
        let given = token.as_bytes();
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            // `ct_eq` on slices of different lengths is false without comparing contents; the
            // length of a secret is not the secret.
            if bool::from(t.secret.as_slice().ct_eq(given)) && found.is_none() {
                found = Some(t);
            }
        }
        found.map(|t| Caller {
            user: t.user.clone(),
            scope: t.scope,
        })
    }
}

impl Authenticate for StaticTokens {
    fn authenticate<'a>(&'a self, request: RequestView<'a>) -> AuthFuture<'a> {
        let caller = match request.bearer() {
            None if request.headers.contains_key(header::AUTHORIZATION) => {
                tracing::debug!("unsupported Authorization header: the request runs at guest");
                Caller::guest()
            }
            None => Caller::guest(),
            Some(token) => self.lookup(token).unwrap_or_else(|| {
                tracing::debug!("unknown bearer token: the request runs at guest");
                Caller::guest()
            }),
        };
        Box::pin(std::future::ready(caller))
    }
}
