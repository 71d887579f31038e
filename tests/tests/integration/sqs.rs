//! The queue contract against SQS FIFO, emulated by moto server.

mod queue_contract {
    use integration_tests::{contract, moto};

    #[tokio::test]
    async fn send_receive_delete() {
        contract::send_receive_delete(&moto::transport().await).await;
    }

    #[tokio::test]
    async fn duplicates_are_dropped() {
        contract::duplicates_are_dropped(&moto::transport().await).await;
    }

    #[tokio::test]
    async fn groups_keep_their_order() {
        contract::groups_keep_their_order(&moto::transport().await).await;
    }

    #[tokio::test]
    async fn unacknowledged_messages_come_back() {
        contract::unacknowledged_messages_come_back(&moto::transport().await).await;
    }

    #[tokio::test]
    async fn visibility_can_be_changed() {
        contract::visibility_can_be_changed(&moto::transport().await).await;
    }

    #[tokio::test]
    async fn poison_messages_are_dead_lettered_and_redriven() {
        contract::poison_messages_are_dead_lettered_and_redriven(&moto::transport().await).await;
    }
}
