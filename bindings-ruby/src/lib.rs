//! Placeholder until the ruby binding lands.
