fn main() {
    std::process::exit(msgraph_connector::cli::main());
}
