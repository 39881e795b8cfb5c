fn main() -> std::process::ExitCode {
    match gaffer::cli::main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gaffer: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
