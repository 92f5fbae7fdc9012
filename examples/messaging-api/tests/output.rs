//! The server's whole output — stdout and stderr, with every log level on —
//! holds no secret but the one `bootstrap key:` line of a generated key:
//! not created or rotated keys, not webhook signing secrets, not tokens
//! that failed to authenticate, not an operator's `BOOTSTRAP_KEY`.

mod support;

use support::{Server, TempDir};
use tollgate_auth::KeyFormat;
use tollgate_core::KeyKind;

fn start(dir: &TempDir, bootstrap_key: Option<&str>) -> Server {
    let database = dir.file("api.db");
    let args = ["--database", database.as_str(), "--allow-private-webhook-urls"];
    let mut env = vec![("RUST_LOG", "trace")];
    env.extend(bootstrap_key.map(|key| ("BOOTSTRAP_KEY", key)));
    Server::start(&args, &env)
}

fn field(body: &serde_json::Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
        .to_owned()
}

fn lines_containing<'a>(output: &'a [String], secret: &str) -> Vec<&'a String> {
    output.iter().filter(|line| line.contains(secret)).collect()
}

fn a_stranger() -> String {
    KeyFormat::default()
        .try_generate(KeyKind::Production)
        .expect("a key")
        .expose_secret()
        .to_owned()
}

#[test]
fn a_generated_bootstrap_key_is_printed_once_and_no_other_secret_ever() {
    let dir = TempDir::new("output");
    let server = start(&dir, None);
    let bootstrap = server.bootstrap_key().expect("a fresh database prints a bootstrap key");

    let body = r#"{"label":"Production Server","type":"production"}"#;
    let created = server.call("POST", "/v1/keys", &bootstrap, Some(body));
    assert_eq!(created.status, 201, "{}", created.body);
    let (created_id, created_key) = (field(&created.json(), "id"), field(&created.json(), "key"));
    let rotated = server.call("POST", &format!("/v1/keys/{created_id}/rotate"), &bootstrap, None);
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let rotated_key = field(&rotated.json(), "key");
    let webhook = server.call(
        "PUT",
        "/v1/webhooks",
        &bootstrap,
        Some(r#"{"url":"http://127.0.0.1:9/hooks"}"#),
    );
    assert_eq!(webhook.status, 200, "{}", webhook.body);
    let webhook_secret = field(&webhook.json(), "secret");
    // A well-formed key nobody holds, and garbage: both refused, neither echoed.
    let stranger = a_stranger();
    let garbage = "tg_live_not-a-real-key-1234";
    assert_eq!(server.call("GET", "/v1/keys", &stranger, None).status, 401);
    assert_eq!(server.call("GET", "/v1/keys", garbage, None).status, 401);
    assert_eq!(server.call("GET", "/v1/keys", &rotated_key, None).status, 200);

    let (status, output) = server.stop();
    assert!(status.success(), "clean exit after SIGTERM: {output:#?}");
    assert!(
        output.iter().any(|line| line == "stopped"),
        "the whole output, to the last line"
    );
    assert_eq!(
        lines_containing(&output, &bootstrap),
        [&format!("bootstrap key: {bootstrap}")],
        "the generated key is printed once, on its own line"
    );
    for (what, secret) in [
        ("the created key", created_key.as_str()),
        ("the rotated key", rotated_key.as_str()),
        ("the webhook signing secret", webhook_secret.as_str()),
        ("an unknown key", stranger.as_str()),
        ("a malformed token", garbage),
    ] {
        assert!(
            lines_containing(&output, secret).is_empty(),
            "{what} appears in the output: {:#?}",
            lines_containing(&output, secret)
        );
    }
}

#[test]
fn an_operators_bootstrap_key_is_imported_and_never_echoed() {
    let dir = TempDir::new("output-operator");
    let key = a_stranger();
    let server = start(&dir, Some(&key));
    assert_eq!(
        server.call("GET", "/v1/keys", &key, None).status,
        200,
        "the key was imported"
    );
    let (status, output) = server.stop();
    assert!(status.success(), "{output:#?}");
    assert!(lines_containing(&output, &key).is_empty(), "{output:#?}");
    assert!(
        !output.iter().any(|line| line.contains("bootstrap key:")),
        "nothing is printed for a key the operator chose: {output:#?}"
    );
}
