
    #[tokio::test]
    async fn handles_{{event_word}}() {
        let event = testing::build_event("{{event}}");
        assert_eq!({{class_name}}.handle(&event).await, Ok(()));
    }
