//! Local stand-ins for the thermometer clouds, answering as the protocol reference says
//! (feature `testsuite`). They let the adapters run unchanged — only their base URL set —
//! in tests and by hand.

pub mod thermoworks;
