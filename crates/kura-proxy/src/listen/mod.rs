//! Accepting and serving connections: listeners and their workers, their sockets (bound, or
//! inherited from a kura being replaced), TLS, HTTP/1 and HTTP/2 (with upgrades), the header,
//! idle and send timeouts, and the side listeners' limits.

pub mod connection;
pub mod server;
pub mod side;
pub mod sockets;
pub mod timeouts;
pub mod tls;
pub mod worker;
