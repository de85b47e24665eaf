//! Generated tonic/prost code for the `emberline.v1` gRPC API, its file descriptor set
//! (for server reflection), and the one convention the messages cannot carry: the
//! [`start_offsets`] header of subscriptions. The `.proto` files are the source.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// The `emberline.v1` package.
pub mod v1 {
    tonic::include_proto!("emberline.v1");
}

/// The encoded file descriptor set of every `.proto` in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("emberline_descriptor");

/// The `emberline-start-offsets` response header of every subscription: where each
/// subscribed partition starts, as `partition=offset` pairs joined by commas (`3=128,0=7`).
/// A client that has seen no update of a partition when its stream breaks resumes that
/// partition from here; resuming "from now" instead would skip what was appended meanwhile.
pub mod start_offsets {
    use std::collections::HashMap;

    /// The header's name.
    pub const HEADER: &str = "emberline-start-offsets";

    /// The header's value for `starts`.
    pub fn render(starts: &[(u32, u64)]) -> String {
        starts
            .iter()
            .map(|(p, o)| format!("{p}={o}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The pairs of a header value; malformed pairs are skipped.
    pub fn parse(value: &str) -> Vec<(u32, u64)> {
        value
            .split(',')
            .filter_map(|pair| {
                let (p, o) = pair.trim().split_once('=')?;
                Some((p.parse().ok()?, o.parse().ok()?))
            })
            .collect()
    }

    /// Adds the starts in `metadata` to `resume` for partitions it has no position of yet.
    pub fn seed(resume: &mut HashMap<u32, u64>, metadata: &tonic::metadata::MetadataMap) {
        let Some(value) = metadata.get(HEADER).and_then(|v| v.to_str().ok()) else {
            return;
        };
        for (partition, offset) in parse(value) {
            resume.entry(partition).or_insert(offset);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pairs_round_trip_and_malformed_ones_are_skipped() {
            assert_eq!(render(&[(3, 128), (0, 7)]), "3=128,0=7");
            assert_eq!(parse("3=128,0=7"), vec![(3, 128), (0, 7)]);
            assert_eq!(parse("3=128,x=1,4,"), vec![(3, 128)]);
            assert!(parse("").is_empty());
        }

        #[test]
        fn seeding_keeps_positions_already_held() {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert(HEADER, "0=10,1=20".parse().expect("ascii"));
            let mut resume = HashMap::from([(0, 15)]);
            seed(&mut resume, &metadata);
            assert_eq!(resume, HashMap::from([(0, 15), (1, 20)]));
        }
    }
}
