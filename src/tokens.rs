//! Tokens: one per registry, kept in memory by the [`TokenCache`], fetched
//! through a [`TokenSource`] (AWS in the daemon, fakes in tests) and
//! refreshed on the schedule a [`RefreshPolicy`] sets, on an injected
//! [`Clock`].

mod cache;
mod source;
mod timing;

pub use cache::{all_ready, not_ready, GetError, Reconfigured, RegistryCredentials, TokenCache};
pub use source::{FetchError, FetchedToken, Refusal, TokenSource};
pub use timing::{Clock, RefreshPolicy, SystemClock};
