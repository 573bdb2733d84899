//! Integration tests: the built binary run as a process, as docker runs it, against real
//! AWS SDK clients pointed at moto on loopback with credentials from an IMDS fixture.

// Tests report what their random runs did.
#![allow(clippy::print_stderr)]

mod cache;
mod clients;
mod configure;
mod faults;
mod get;
mod leaks;
mod store;
mod support;
