//! The error the test controls return (`StripeSim::complete_checkout`...).
//! The HTTP API turns the same errors into Stripe error objects.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no such {kind}: {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("the card of customer {0} was declined")]
    CardDeclined(String),
}
