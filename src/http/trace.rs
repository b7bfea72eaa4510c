//! The request span, which extractors enrich once they learn who is calling.

use tracing::{Span, field};

/// The span of the current request, for extractors that learn who is calling.
#[derive(Debug, Clone)]
pub struct RequestSpan(pub Span);

impl RequestSpan {
    pub fn record_user(&self, user_id: &impl std::fmt::Display) {
        self.0.record("user_id", field::display(user_id));
    }
}
