// `sqlx::migrate!` embeds the migration files at compile time, but on stable Rust the compiler
// does not know it read them: without this, a new migration alone would not rebuild the crate
// and the binary would silently lack it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
