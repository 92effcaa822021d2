//! The `vigil` command line. Parsing arguments and printing only; the work is in the library.

fn main() {
    println!("vigil {}", env!("CARGO_PKG_VERSION"));
}
