//! The tenant model: fixtures load, the generator is deterministic and realistic.

use std::collections::HashSet;
use std::time::Instant;

use graph_emulator::{GenerateSpec, Tenant};

use crate::support::FIXTURE;

#[test]
fn same_seed_gives_byte_identical_tenant() {
    let spec = GenerateSpec {
        users: 300,
        sign_ins: 5000,
        seed: 42,
        day: None,
    };
    let a = serde_json::to_vec(&Tenant::generate(&spec)).unwrap();
    let b = serde_json::to_vec(&Tenant::generate(&spec)).unwrap();
    assert_eq!(a, b);
    let c = serde_json::to_vec(&Tenant::generate(&GenerateSpec { seed: 43, ..spec })).unwrap();
    assert_ne!(a, c);
}

#[test]
fn generated_tenant_round_trips_through_json_and_yaml() {
    let t = Tenant::generate(&GenerateSpec {
        users: 40,
        sign_ins: 200,
        seed: 5,
        day: None,
    });
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(Tenant::from_json(&json).unwrap(), t);
    let yaml = serde_norway::to_string(&t).unwrap();
    assert_eq!(Tenant::from_yaml(&yaml).unwrap(), t);
}

#[test]
fn generated_org_has_offices_zones_and_address_mix() {
    let t = Tenant::generate(&GenerateSpec {
        users: 500,
        sign_ins: 20_000,
        seed: 9,
        day: None,
    });
    let zones: HashSet<_> = t
        .offices()
        .iter()
        .map(|o| o.time_zone.to_string())
        .collect();
    assert!(zones.len() >= 2, "{zones:?}");
    assert!(t.offices().iter().any(|o| o.remote));
    for o in t.offices() {
        assert!(o.cidrs.iter().any(|c| matches!(c, ipnet::IpNet::V4(_))));
        assert!(o.cidrs.iter().any(|c| matches!(c, ipnet::IpNet::V6(_))));
    }
    let in_office = |ip: &std::net::IpAddr| {
        t.offices()
            .iter()
            .any(|o| !o.remote && o.cidrs.iter().any(|c| c.contains(ip)))
    };
    let office: Vec<_> = t
        .sign_ins
        .iter()
        .filter(|s| in_office(&s.ip_address))
        .collect();
    let v4 = office.iter().filter(|s| s.ip_address.is_ipv4()).count() as f64 / office.len() as f64;
    assert!((0.65..0.75).contains(&v4), "IPv4 share {v4}");
    let nowhere = t
        .sign_ins
        .iter()
        .filter(|s| {
            !t.offices()
                .iter()
                .any(|o| o.cidrs.iter().any(|c| c.contains(&s.ip_address)))
        })
        .count();
    assert!(nowhere > 0, "some sign-ins come from home addresses");
    assert!(t.sign_ins.iter().any(|s| s.error_code != 0));
    let late = t
        .sign_ins
        .iter()
        .filter(|s| s.visible_at().duration_since(s.created_date_time).as_secs() >= 15 * 60)
        .count();
    assert!(late > 0);
    assert!(
        t.sign_ins
            .iter()
            .all(|s| s.visible_at().duration_since(s.created_date_time).as_secs() <= 25 * 60)
    );
    assert!(
        t.users
            .iter()
            .any(|u| u.user_principal_name.starts_with('$'))
    );
    assert!(t.users.iter().any(|u| u.user_principal_name.contains('\'')));
    assert!(t.delegated_users.iter().any(|d| d.mfa_required));
    assert!(t.delegated_users.iter().any(|d| !d.mfa_required));
}

#[test]
fn generating_makes_the_sizes_asked_for() {
    // Its speed is measured by `benchmark_sized_tenant` below, not asserted here.
    let t = Tenant::generate(&GenerateSpec {
        users: 10_000,
        sign_ins: 100_000,
        seed: 1,
        day: None,
    });
    assert_eq!(t.users.len(), 10_000);
    assert_eq!(t.sign_ins.len(), 100_000);
}

#[test]
fn fixture_loads_and_schema_describes_it() {
    let t = Tenant::load(FIXTURE).unwrap();
    assert_eq!(t.domain, "fabrikam.example");
    assert!(
        t.users
            .iter()
            .any(|u| u.user_principal_name == "sean.o'brien@fabrikam.example")
    );
    let schema = Tenant::json_schema();
    assert!(schema["properties"]["users"].is_object(), "{schema}");
    assert!(schema["properties"]["sign_ins"].is_object());
}

#[test]
fn fixture_errors_name_the_problem() {
    let bad = "tenant_id: 0f0e0d0c-0b0a-4900-8800-000000000001\ndisplay_name: x\ndomain: x.example\ngroups:\n  - { id: aaaaaaaa-0000-4000-8000-000000000001, displayName: G, members: [11111111-1111-4111-8111-111111111111] }\n";
    let err = Tenant::from_yaml(bad).unwrap_err().to_string();
    assert!(err.contains("unknown member"), "{err}");
    let err = Tenant::from_yaml("tenant_id: nope\ndisplay_name: x\ndomain: y\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("GUID"), "{err}");
}

/// `cargo test --release -p graph-emulator --test emulator -- --ignored --nocapture benchmark_sized_tenant`: the
/// benchmark-sized tenant (100k users, 1M sign-ins).
#[test]
#[ignore]
fn benchmark_sized_tenant() {
    let started = Instant::now();
    let t = Tenant::generate(&GenerateSpec {
        users: 100_000,
        sign_ins: 1_000_000,
        seed: 1,
        day: None,
    });
    eprintln!(
        "generated {} users, {} sign-ins in {:?}; {} bytes per sign-in record in memory",
        t.users.len(),
        t.sign_ins.len(),
        started.elapsed(),
        std::mem::size_of::<graph_emulator::SignIn>()
    );
}
