fn main() {
    std::process::exit(queuectl::cli::main(std::env::args_os()));
}
