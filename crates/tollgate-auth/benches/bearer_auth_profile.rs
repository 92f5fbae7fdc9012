//! Instruction counts per request, for callgrind: runs one scenario a fixed
//! number of times inside `measured`, so a profile restricted to that
//! function divided by the iteration count is the cost of one request,
//! without setup and without a timer's noise. Same requests as the
//! `bearer_auth` bench.
//!
//! ```text
//! cargo bench -p tollgate-auth --bench bearer_auth_profile --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/bearer_auth_profile-<hash> valid_key 100000
//! callgrind_annotate callgrind.out.<pid>
//! ```
//!
//! Scenarios: `bare`, `valid_key`, `unknown_key`, `sha256`.
//! Run without valgrind it prints each scenario's mean time.

use std::hint::black_box;
use std::time::Instant;

use http::HeaderValue;
use tollgate_auth::{hash_key, BearerAuthLayer, KeyFormat};
use tollgate_core::KeyKind;
use tower::Layer;

mod fixture;

use fixture::{bare, populated_store, request, serve, KEYS_USED};

// The only function callgrind collects in (`--toggle-collect='*measured*'`).
#[inline(never)]
fn measured(iters: usize, mut op: impl FnMut(usize)) {
    for i in 0..iters {
        op(i);
    }
}

fn run(iters: usize, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..KEYS_USED * 4 {
        op(i);
    }
    let start = Instant::now();
    measured(iters, op);
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let scenario = args.next().unwrap_or_else(|| "all".to_owned());
    let iters: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);

    let (store, headers) = populated_store();
    let unknown = KeyFormat::default().generate(KeyKind::Production);
    let unknown = HeaderValue::from_str(&format!("Bearer {}", unknown.expose_secret())).unwrap();

    let scenarios: Vec<&str> = match scenario.as_str() {
        "all" => vec!["bare", "valid_key", "unknown_key", "sha256"],
        one => vec![one],
    };
    for scenario in scenarios {
        let nanos = match scenario {
            "bare" => {
                let mut service = bare();
                run(iters, |i| {
                    black_box(serve(&mut service, request(&headers[i % KEYS_USED])));
                })
            }
            "valid_key" => {
                let mut service = BearerAuthLayer::new(store.clone()).layer(bare());
                run(iters, |i| {
                    let response = serve(&mut service, request(&headers[i % KEYS_USED]));
                    assert_eq!(response.status(), 200);
                    black_box(response);
                })
            }
            "unknown_key" => {
                let mut service = BearerAuthLayer::new(store.clone()).layer(bare());
                run(iters, |_| {
                    let response = serve(&mut service, request(&unknown));
                    assert_eq!(response.status(), 401);
                    black_box(response);
                })
            }
            "sha256" => {
                let tokens: Vec<String> = headers.iter().map(|h| h.to_str().unwrap()[7..].to_owned()).collect();
                run(iters, |i| {
                    black_box(hash_key(black_box(&tokens[i % KEYS_USED])));
                })
            }
            other => panic!("unknown scenario {other:?}"),
        };
        println!("{scenario}: {nanos:.1} ns/request over {iters} requests");
    }
}
