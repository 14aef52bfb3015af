//! An offline, stateful Stripe: the tests' double of Stripe's API and the
//! simulator `handler serve` runs when no Stripe key is configured.
