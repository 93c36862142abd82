//! Debian's curl against the TLS listener, as the demo's users will run it (`--resolve`,
//! `--cacert`): HTTP/1.1 and HTTP/2, `Expect: 100-continue` uploads, the minimum TLS version.

use std::process::{Command, Output};

use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use edge_userspace::downstream::MinTls;
use serde_json::Value;
use sha2::{Digest, Sha256};

const HOST: &str = "mystore.example.com";
const MODERN: &str = "modern.example.com";

async fn edge() -> Edge {
    let echo = spawn_echo().await.unwrap();
    let mut setup = EdgeSetup::new(vec![
        (HOST.into(), plain_origin(echo)),
        (MODERN.into(), plain_origin(echo)),
    ]);
    setup.certs = Box::new(|_, store| store.set_min_tls(MODERN, MinTls::Tls13));
    Edge::start(setup).await.unwrap()
}

/// Runs curl off the runtime threads so the edge keeps serving meanwhile.
async fn curl(edge: &Edge, host: &str, args: &[&str]) -> Output {
    let port = edge.tls_addr.port();
    let mut command = Command::new("curl");
    command
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "30",
            "--noproxy",
            "*",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(edge.state_dir.path().join("ca.pem"))
        .args(args)
        .arg(format!("https://{host}:{port}/via-curl?x=1"));
    tokio::task::spawn_blocking(move || command.output().expect("curl is installed"))
        .await
        .unwrap()
}

#[tokio::test]
async fn curl_over_http1_and_http2() {
    let edge = edge().await;
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let output = curl(&edge, HOST, &[flag, "--write-out", "\n%{http_version}"]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let (json, negotiated) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(negotiated, version);
        let echo: Value = serde_json::from_str(json).unwrap();
        assert_eq!(echo["path"], "/via-curl");
        assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
        assert_eq!(echo["headers"]["cf-connecting-ip"][0], "127.0.0.1");
        assert!(
            echo["headers"]["cf-ray"][0]
                .as_str()
                .unwrap()
                .ends_with("-EDGE")
        );
    }
}

#[tokio::test]
async fn curl_upload_with_expect_continue() {
    let edge = edge().await;
    let file = edge.state_dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let upload = format!("@{}", file.display());
    let output = curl(
        &edge,
        HOST,
        &[
            "--http1.1",
            "--verbose",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &upload,
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    let echo: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(echo["headers"]["expect"][0], "100-continue");
    assert_eq!(echo["body"]["length"], data.len());
    let sha: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(echo["body"]["sha256"], sha.as_str());
}

#[tokio::test]
async fn curl_with_tls12_is_refused_for_a_tls13_hostname() {
    let edge = edge().await;
    let refused = curl(&edge, MODERN, &["--tls-max", "1.2"]).await;
    // 35: the TLS handshake failed.
    assert_eq!(
        refused.status.code(),
        Some(35),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let accepted = curl(&edge, HOST, &["--tls-max", "1.2"]).await;
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
}
