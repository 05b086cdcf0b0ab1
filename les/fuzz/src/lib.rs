//! Shared fixtures of the fuzz targets; see [`peer`].
pub mod peer;
