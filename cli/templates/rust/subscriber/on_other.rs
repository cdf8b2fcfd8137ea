
/// The events no arm of `handle` names ({{wildcards}}).
fn on_other(event: &Event) -> Result<(), String> {
    println!("{{class_name}}: {} {}", event.name, event.event_id);
    Ok(())
}
