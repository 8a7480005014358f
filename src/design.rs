//! The design documents of `design/`, rendered into the API docs (not a copy: included).
#![forbid(unsafe_code)]

#[doc = include_str!("../design/architecture.md")]
pub mod architecture {}
