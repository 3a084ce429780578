//! Domain tests on the in-memory and filesystem drivers.
