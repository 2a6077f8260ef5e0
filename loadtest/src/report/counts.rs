//! What a run counted: rates, connections, and the connect and chat
//! scenarios' own figures.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rates {
    pub messages_sent_per_s: f64,
    pub messages_received_per_s: f64,
    pub bytes_sent_per_s: f64,
    pub bytes_received_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    pub requested: u64,
    /// Handshakes completed (connect scenario: over the whole run).
    pub opened: u64,
    /// Failed to connect or to complete the handshake.
    pub failed: u64,
    /// Idle scenario: still up at the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Churn {
    pub handshakes: u64,
    pub handshakes_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Chat {
    pub rooms: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// What the messages sent in the window should have made.
    pub expected_deliveries: u64,
    /// Deliveries never made (sequence gaps plus what was missing at the end).
    pub drops: u64,
}
