//! What every subsystem's metrics share, a leaf: the label set of metrics counted by
//! kind and the latency histogram's buckets. Labels come from closed sets (route, status,
//! failure kind): no label ever carries a key, an account id, a model name a client chose,
//! or prompt text, so the number of series stays bounded whatever clients send.
//!
//! Each subsystem defines its own metrics beside the code that measures them, with a
//! `register(&self, &mut Registry)`; [`crate::app::Metrics`] owns the registry they are
//! registered in, and the admin listener serves it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

/// A metric counted by kind (failure kind, limit, action): `kind` is one of a closed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Latency buckets, 1 ms .. ~65 s, doubling: LLM calls span milliseconds (embeddings) to
/// a minute (long streams).
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17))
}
