//! `sluice deploy`: a new operator version, uploaded to a running server.

use anyhow::Context;
use std::process::ExitCode;

/// `sluice deploy`: uploads `file` as the next version of `operator` of
/// job `job` on `server` and prints what became of it.
pub(super) fn deploy(
    file: &std::path::Path,
    job: &str,
    operator: &str,
    server: &str,
    token: Option<String>,
) -> anyhow::Result<ExitCode> {
    let token = token
        .or_else(|| std::env::var("SLUICE_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .context("no token: pass --token or set SLUICE_TOKEN")?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let url = format!(
        "{}/v1/jobs/{}/operators/{}",
        server.trim_end_matches('/'),
        path_segment(job),
        path_segment(operator)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(
            crate::serve::api::DEPLOY_WAIT + std::time::Duration::from_secs(30),
        ))
        .build()
        .into();
    eprintln!(
        "uploading {} ({} bytes) as operator `{operator}` of job {job}; waiting for the job to try it",
        file.display(),
        bytes.len()
    );
    let mut response = agent
        .put(&url)
        .header("Authorization", format!("Bearer {token}"))
        .send(&bytes[..])
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    match status {
        200 => {
            say!(
                "version {} of `{operator}` adopted from batch {} ({:.0} ms after the upload)",
                body["version"],
                body["first_batch"],
                body["after_ms"].as_f64().unwrap_or(0.0)
            );
            Ok(ExitCode::SUCCESS)
        }
        202 => {
            say!(
                "version {} of `{operator}` uploaded, not decided yet: {}",
                body["version"],
                body["note"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::from(2))
        }
        _ => {
            let why = body["error"].as_str().map_or(text.as_str(), |e| e);
            eprintln!("error: {status}: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `text` as one URL path segment: every byte but the unreserved ones
/// percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("counter"), "counter");
        assert_eq!(path_segment("my op/../x"), "my%20op%2F..%2Fx");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
