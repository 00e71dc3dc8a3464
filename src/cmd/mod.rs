//! One module per command; each turns resolved flags into library calls.

pub mod analyze;
pub mod import;
pub mod inspect;
pub mod live;
pub mod record;
