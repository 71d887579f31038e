//! The queue contract against SQS FIFO, emulated by moto server.

mod queue_contract {
    integration_tests::queue_contract_tests!(integration_tests::moto::transport().await);
}
