//! Rebuilds the crate when a migration file is added or changed: `sqlx::migrate!` embeds the
//! `migrations/` directory at compile time, and cargo does not otherwise notice a new file
//! there (a package built before it would then refuse a database migrated by a newer one).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
