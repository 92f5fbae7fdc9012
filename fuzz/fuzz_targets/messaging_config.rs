//! messaging-api's configuration file: arbitrary text never panics the
//! parser or the validation, and a document written from arbitrary
//! settings reads back as exactly those settings, valid exactly when every
//! limit is positive.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use messaging_api::config::PlanConfig;
use messaging_api::Config;

#[derive(Arbitrary, Debug)]
struct Input {
    raw: String,
    plans: Vec<(String, u32, Option<u32>, Option<u64>)>,
    failed_auth_per_minute: u32,
    max_keys_per_account: u16,
    rotation_grace_secs: u32,
    trusted_proxies: Vec<(std::net::IpAddr, u8)>,
    account_plan: Option<String>,
}

// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|input: Input| {
    // Arbitrary text.
    if let Ok(config) = Config::from_toml(&input.raw) {
        let _ = config.validate();
        let _ = format!("{config:?}");
    }

    // A document from settings.
    let mut plans = std::collections::BTreeMap::new();
    for (name, per_second, burst, daily) in input.plans.iter().take(4) {
        plans.insert(
            name.clone(),
            PlanConfig {
                per_second: *per_second,
                burst: *burst,
                daily: *daily,
            },
        );
    }
    let networks: Vec<ipnet::IpNet> = input
        .trusted_proxies
        .iter()
        .take(4)
        .map(|(ip, prefix)| {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            ipnet::IpNet::new(*ip, prefix % (max + 1)).unwrap()
        })
        .collect();
    let mut text =
        format!(
        "failed_auth_per_minute = {}\nmax_keys_per_account = {}\nrotation_grace_secs = {}\ntrusted_proxies = [{}]\n",
        input.failed_auth_per_minute,
        input.max_keys_per_account,
        input.rotation_grace_secs,
        networks.iter().map(|n| quoted(&n.to_string())).collect::<Vec<_>>().join(", "),
    );
    if let Some(plan) = &input.account_plan {
        text.push_str(&format!(
            "\n[[accounts]]\nid = \"acct_fuzz\"\nplan = {}\n",
            quoted(plan)
        ));
    }
    for (name, plan) in &plans {
        text.push_str(&format!(
            "\n[plans.{}]\nper_second = {}\n",
            quoted(name),
            plan.per_second
        ));
        if let Some(burst) = plan.burst {
            text.push_str(&format!("burst = {burst}\n"));
        }
        if let Some(daily) = plan.daily {
            // TOML integers are signed 64-bit.
            if i64::try_from(daily).is_err() {
                assert!(Config::from_toml(&format!("{text}daily = {daily}\n")).is_err());
                return;
            }
            text.push_str(&format!("daily = {daily}\n"));
        }
    }
    let config = Config::from_toml(&text).unwrap_or_else(|error| panic!("{text}\n{error}"));
    assert_eq!(config.plans, plans);
    assert_eq!(config.failed_auth_per_minute, input.failed_auth_per_minute);
    assert_eq!(config.max_keys_per_account, usize::from(input.max_keys_per_account));
    assert_eq!(config.rotation_grace_secs, u64::from(input.rotation_grace_secs));
    assert_eq!(config.trusted_proxies, networks);
    let positive = plans
        .values()
        .all(|p| p.per_second > 0 && p.burst != Some(0) && p.daily != Some(0))
        && input.failed_auth_per_minute > 0
        && input.max_keys_per_account > 0;
    let known_plan = input
        .account_plan
        .as_ref()
        .is_none_or(|plan| plans.contains_key(plan) || ["free", "premium", "enterprise"].contains(&plan.as_str()));
    assert_eq!(config.validate().is_ok(), positive && known_plan, "{text}");
});
