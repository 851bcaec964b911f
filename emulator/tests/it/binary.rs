//! The `wif-emulator` binary: prints one JSON line, serves, exits on SIGTERM.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[cfg(unix)]
#[test]
fn binary_prints_info_serves_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("wif-emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"aws": {"region": "eu-central-1"}}"#).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wif-emulator"))
        .args(["--config", config.to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let url = info["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(info["issuer"], format!("{url}/aws/issuer"));
    assert_eq!(info["env"]["AWS_REGION"], "eu-central-1");
    assert_eq!(
        info["env"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        format!("{url}/aws/container/credentials")
    );
    for key in [
        "oidc_audience",
        "aws_audience",
        "service_account",
        "token_url",
    ] {
        assert!(info[key].is_string(), "{key}");
    }
    let addr = url.trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    let bad = Command::new(env!("CARGO_BIN_EXE_wif-emulator"))
        .args(["--config", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
