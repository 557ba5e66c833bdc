//! Integration tests of the facade over real loopback sockets.

mod http;
mod lifecycle;
mod limits;
mod middleware;
mod raw;
