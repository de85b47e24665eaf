//! The projection-store conformance suite against the embedded store.

use std::sync::Arc;

use emberline_projections::conformance::{Backend, BoxFuture};
use emberline_projections::{EmbeddedStore, ProjectionStore};

struct Embedded {
    dir: tempfile::TempDir,
}

impl Backend for Embedded {
    fn open(&self) -> BoxFuture<'_, Arc<dyn ProjectionStore>> {
        Box::pin(async move {
            Arc::new(EmbeddedStore::open(&self.dir.path().join("p.redb")).expect("open"))
                as Arc<dyn ProjectionStore>
        })
    }
}

async fn embedded() -> Option<Embedded> {
    Some(Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

emberline_projections::projection_suite!(embedded_store, embedded());
