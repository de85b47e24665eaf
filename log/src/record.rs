//! Records as they go into and come out of the log.

/// A record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Partitioning key (a device id for Emberline's topics).
    pub key: Vec<u8>,
    /// The payload.
    pub value: Vec<u8>,
    /// Event time, epoch ms; must be positive (Kafka clients read 0 as "stamp the append time").
    pub timestamp_ms: i64,
}

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Partitioning key.
    pub key: Vec<u8>,
    /// The payload.
    pub value: Vec<u8>,
    /// Event time, epoch ms.
    pub timestamp_ms: i64,
}
