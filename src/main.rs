//! The wif-helper binary: all logic lives in the library.

fn main() -> std::process::ExitCode {
    wif_helper::cli_main()
}
