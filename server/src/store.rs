//! placeholder, filled by its module owner.
