//! A target's region is the one its requests are signed for (SigV4 credential scope), which
//! servers outside `us-east-1` check. The server here is a loopback listener that records each
//! request's `Authorization` header and refuses it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use support::Repo;

/// Starts a listener that answers every request with 403; returns its endpoint and the
/// `Authorization` headers it saw.
fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(value) = line
                    .strip_prefix("authorization: ")
                    .or(line.strip_prefix("Authorization: "))
                {
                    record.lock().unwrap().push(value.trim().to_string());
                }
                line.clear();
            }
            let body = "<Error><Code>AccessDenied</Code><Message>recorded</Message></Error>";
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (endpoint, seen)
}

/// The regions in the credential scopes of `headers` (`Credential=KEY/DATE/REGION/s3/...`).
fn regions(headers: &[String]) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| h.split("Credential=").nth(1)?.split('/').nth(2).map(String::from))
        .collect()
}

#[test]
fn requests_are_signed_for_the_targets_region() {
    for (query, expected) in [("&region=eu-central-2", "eu-central-2"), ("", "us-east-1")] {
        let (endpoint, seen) = recording_server();
        let repo = Repo::on_server(format!("s3://hort/repo?credentials=HORT_TARGET_0{query}"), &endpoint);
        let out = repo.run(&["snapshots"]);
        assert!(!out.status.success(), "the recording server refuses everything");
        let signed = regions(&seen.lock().unwrap());
        assert!(!signed.is_empty(), "no signed request reached the server");
        assert!(
            signed.iter().all(|r| r == expected),
            "signed for {signed:?}, not {expected}"
        );
    }
}
