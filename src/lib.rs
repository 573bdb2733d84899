//! docker-credential-slothbox: registry credentials from the customer's AWS account.
//!
//! The core (`protocol`, `host`, `secret`, `error`, `config`) is pure; `backend` is the only
//! edge that talks to AWS, and `cli` wires the verbs to stdio.

pub mod atomic_file;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod config;
pub mod configure;
pub mod doctor;
pub mod error;
pub mod host;
pub mod protocol;
pub mod secret;
pub mod store;
