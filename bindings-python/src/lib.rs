//! Placeholder until the python binding lands.
