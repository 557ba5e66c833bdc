//! The examples, run as processes the way users run them, checked against the catalogue.

mod auth;
mod cluster;
mod deflate;
mod http;
mod liveness;
mod origin;
mod rooms;
mod secure;
mod signals;
mod support;
mod tower;
mod ws;
