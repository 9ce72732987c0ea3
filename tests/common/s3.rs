//! moto's S3 server (PyPI `moto[server]`, installed by `tests/tools/setup`
//! into `target/test-tools`), started on a loopback port with one bucket,
//! `models`, and read back the way a user would inspect a bucket.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{ChildGuard, free_port, log_section, test_tool};

/// A running moto server with the bucket `models`.
pub struct S3 {
    pub process: ChildGuard,
    pub endpoint: String,
    bucket: object_store::aws::AmazonS3,
}

impl S3 {
    /// Starts moto on a free port, its log in `dir`, and creates the bucket.
    pub async fn start(dir: &Path, client: &reqwest::Client) -> Self {
        let port = free_port();
        let mut cmd = Command::new(test_tool("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("models")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("an S3 client");
        let s3 = Self {
            process: ChildGuard::spawn("moto", cmd, &dir.join("moto.log")),
            endpoint,
            bucket,
        };
        for _ in 0..200 {
            // Creating the bucket is also the readiness probe.
            let created = client.put(format!("{}/models", s3.endpoint)).send().await;
            if created.is_ok_and(|r| r.status().is_success()) {
                return s3;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "moto did not answer within 20 s{}",
            log_section(&s3.process)
        );
    }

    /// The AWS environment a promcast on this server needs.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The generation a family's pointer names under `prefix`, and when
    /// that model was trained (Unix ms); (0, 0) without one.
    pub async fn pointer(&self, prefix: &str, family: &str) -> (u64, i64) {
        use object_store::ObjectStore as _;
        let path = object_store::path::Path::from(format!("{prefix}/{family}/current"));
        let body = match self.bucket.get(&path).await {
            Ok(read) => read.bytes().await.expect("the pointer"),
            Err(object_store::Error::NotFound { .. }) => return (0, 0),
            Err(e) => panic!("GET {path}: {e}"),
        };
        let pointer: serde_json::Value = serde_json::from_slice(&body).expect("pointer JSON");
        (
            pointer["generation"].as_u64().expect("generation"),
            pointer["trained_at_ms"].as_i64().expect("trained_at_ms"),
        )
    }
}
