
/// {{event}}: `event.payload`, `event.task_uuid`, `event.occurred_at`, ...
fn {{function}}(event: &Event) -> Result<(), String> {
    println!("{{class_name}}: {} {}", event.name, event.event_id);
    Ok(())
}
