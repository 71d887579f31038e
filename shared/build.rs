//! Embeds `migrations/*.sql` (the workspace's single source of truth for the schema) into the
//! library, so the migration runner needs no files at run time.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/ folder")
        .map(|entry| entry.expect("migrations/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("static MIGRATIONS: &[Migration] = &[\n");
    for path in files {
        println!("cargo::rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_str().expect("UTF-8 file name");
        let (version, name) = stem.split_once('_').unwrap_or_else(|| {
            panic!("{stem}: migration files are named <YYYYMMDDHHMMSS>_<name>.sql")
        });
        assert!(
            version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()),
            "{stem}: the version must be a 14-digit UTC timestamp"
        );
        let absolute = path.canonicalize().unwrap();
        writeln!(
            out,
            "    Migration {{ version: {version:?}, name: {name:?}, sql: include_str!({:?}) }},",
            absolute.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(target, out).unwrap();
}
