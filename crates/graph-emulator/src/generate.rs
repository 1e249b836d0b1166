//! A seeded generator of large, realistic tenants, so no bulk data is checked in.
//!
//! The same [`GenerateSpec`] always gives the same tenant, byte for byte. The org
//! ("Contoso Emulated", `contoso.example`) has four offices in three IANA time
//! zones (Berlin, Munich, New York, Singapore), each with an IPv4 and an IPv6
//! block, plus a remote VPN egress; users spread over them; groups, directory
//! roles and administrative units with memberships; and sign-ins over one working
//! day (`day`, local 07:00-18:00 of the user's office): from the office (IPv4 70%,
//! IPv6 30%), the VPN, or home addresses in no range; about 6% failed; most visible
//! within minutes, about 3% only 15-25 minutes later.
//!
//! Fixed names every generated tenant has (the constants below): the app
//! [`FULL_APP_CLIENT_ID`] / [`FULL_APP_SECRET`] with every permission (its service
//! principal holding Privileged Authentication Administrator), the app
//! [`READ_APP_CLIENT_ID`] / [`READ_APP_SECRET`] with only `User.Read.All`,
//! [`DELEGATED_USER`] (password [`DELEGATED_PASSWORD`], member of every group, role
//! and unit), [`MFA_USER`] (same password, MFA required), `sean.o'brien@contoso.example`
//! (apostrophe) and `$svc-reception@contoso.example` (leading `$`), when `users`
//! is at least 4.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::tenant::{
    AppRegistration, DelegatedUser, DirectoryObject, Office, Photo, Presence, RiskyUser, SignIn,
    Tenant, Text, User,
};

/// Tenant id of every generated tenant.
pub const TENANT_ID: &str = "6f1d2c3b-5a4e-4b7c-9d8e-0c1b2a3f4e5d";
/// App with every permission the connector uses (and `User-PasswordProfile.ReadWrite.All`).
pub const FULL_APP_CLIENT_ID: &str = "e1ec7a11-0001-4a00-8000-00000000a001";
pub const FULL_APP_SECRET: &str = "emu-full~S3cret.0001";
/// App with only `User.Read.All` (for 403 tests).
pub const READ_APP_CLIENT_ID: &str = "e1ec7a11-0002-4a00-8000-00000000a002";
pub const READ_APP_SECRET: &str = "emu-read~S3cret.0002";
/// Delegated user who can sign in with a password (ROPC).
pub const DELEGATED_USER: &str = "megan.bowen@contoso.example";
/// Delegated user who must do MFA (ROPC fails with AADSTS50076).
pub const MFA_USER: &str = "alex.wilber@contoso.example";
pub const DELEGATED_PASSWORD: &str = "Emulator-Passw0rd!";
/// The working day sign-ins are generated on when `day` is not given.
pub const DEFAULT_DAY: Date = jiff::civil::date(2025, 6, 2);

const DOMAIN: &str = "contoso.example";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSpec {
    pub users: usize,
    pub sign_ins: usize,
    pub seed: u64,
    /// The working day of the sign-ins (default [`DEFAULT_DAY`]).
    pub day: Option<Date>,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        GenerateSpec {
            users: 50,
            sign_ins: 500,
            seed: 1,
            day: None,
        }
    }
}

impl FromStr for GenerateSpec {
    type Err = String;
    /// `users=N,sign_ins=M,seed=S[,day=YYYY-MM-DD|today]`; missing keys keep defaults.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = GenerateSpec::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}': expected key=value"))?;
            let v = v.trim();
            let num = || {
                v.replace('_', "")
                    .parse::<u64>()
                    .map_err(|_| format!("'{item}': not a number"))
            };
            match k.trim() {
                "users" => spec.users = num()? as usize,
                "sign_ins" | "signins" => spec.sign_ins = num()? as usize,
                "seed" => spec.seed = num()?,
                "day" if v == "today" => {
                    spec.day = Some(Timestamp::now().to_zoned(TimeZone::UTC).date())
                }
                "day" => {
                    spec.day = Some(
                        v.parse()
                            .map_err(|_| format!("'{item}': expected YYYY-MM-DD"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown generate key '{other}' (users, sign_ins, seed, day)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

struct OfficeDef {
    name: &'static str,
    tz: &'static str,
    v4: &'static str,
    v6: &'static str,
    city: &'static str,
    country: &'static str,
    usage: &'static str,
    phone: &'static str,
    remote: bool,
}

const OFFICES: &[OfficeDef] = &[
    OfficeDef {
        name: "Berlin HQ",
        tz: "Europe/Berlin",
        v4: "198.51.100.0/25",
        v6: "2001:db8:100::/48",
        city: "Berlin",
        country: "DE",
        usage: "DE",
        phone: "+49 30 5550",
        remote: false,
    },
    OfficeDef {
        name: "Munich",
        tz: "Europe/Berlin",
        v4: "198.51.100.128/25",
        v6: "2001:db8:200::/48",
        city: "Munich",
        country: "DE",
        usage: "DE",
        phone: "+49 89 5550",
        remote: false,
    },
    OfficeDef {
        name: "New York",
        tz: "America/New_York",
        v4: "203.0.113.0/25",
        v6: "2001:db8:300::/48",
        city: "New York",
        country: "US",
        usage: "US",
        phone: "+1 212 555",
        remote: false,
    },
    OfficeDef {
        name: "Singapore",
        tz: "Asia/Singapore",
        v4: "203.0.113.128/25",
        v6: "2001:db8:400::/48",
        city: "Singapore",
        country: "SG",
        usage: "SG",
        phone: "+65 6555",
        remote: false,
    },
    OfficeDef {
        name: "VPN egress",
        tz: "UTC",
        v4: "192.0.2.0/26",
        v6: "2001:db8:f00::/48",
        city: "Frankfurt am Main",
        country: "DE",
        usage: "DE",
        phone: "",
        remote: true,
    },
];
const HOME_V4: &str = "100.64.0.0/10";
const HOME_V6: &str = "2001:db8:8000::/33";

const GIVEN: &[&str] = &[
    "Adele",
    "Allan",
    "Ben",
    "Christie",
    "Diego",
    "Emily",
    "Enrico",
    "Grady",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Sanjay",
    "Sofia",
    "Tomasz",
    "Yuki",
    "Amara",
    "Bruno",
    "Chen",
    "Dagny",
    "Elif",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
];
const SURNAMES: &[&str] = &[
    "Vance",
    "Deyoung",
    "Walker",
    "Cline",
    "Siciliani",
    "Braun",
    "Cattaneo",
    "Archie",
    "Mueller",
    "Bellinger",
    "Lee",
    "Henshaw",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Graham",
    "Wilke",
    "Fernandez",
    "Gupta",
    "Kumar",
    "Novak",
    "Kowalski",
    "Tanaka",
    "Okafor",
    "Rossi",
    "Zhang",
    "Larsen",
    "Yilmaz",
    "Haddad",
    "Schmidt",
    "Sato",
    "Costa",
    "Weber",
    "Demir",
    "Fischer",
    "Garcia",
    "Petrova",
    "Nilsson",
    "Iyer",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Account Manager",
    "Marketing Specialist",
    "HR Generalist",
    "Financial Analyst",
    "IT Administrator",
    "Sales Director",
    "Support Engineer",
    "Product Manager",
    "Legal Counsel",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Human Resources",
    "Finance",
    "IT",
    "Legal",
    "Support",
];
const PRESENCES: &[(&str, &str, &str)] = &[
    ("Available", "Available", "office"),
    ("Busy", "InAMeeting", "office"),
    ("Busy", "InACall", "remote"),
    ("DoNotDisturb", "Presenting", "office"),
    ("Away", "Away", "unknown"),
    ("BeRightBack", "BeRightBack", "office"),
    ("Offline", "OffWork", "unknown"),
    ("AvailableIdle", "Available", "remote"),
];
const APPS: &[(&str, &str)] = &[
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
    ),
    ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome"),
    (
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
    ),
    ("27922004-5251-4030-b22d-91ecd9a37ea4", "Outlook Mobile"),
    (
        "1950a258-227b-4e31-a9cf-717495945fc2",
        "Microsoft Azure PowerShell",
    ),
];
const DEVICES: &[(&str, &str, &str)] = &[
    ("Windows10", "Edge 124.0.2478", "Browser"),
    (
        "Windows10",
        "Rich Client 4.61.0.0",
        "Mobile Apps and Desktop clients",
    ),
    ("MacOs", "Chrome 125.0.6422", "Browser"),
    (
        "iOS 17.5",
        "Mobile Safari",
        "Mobile Apps and Desktop clients",
    ),
    (
        "Android 14",
        "Rich Client 4.61.0.0",
        "Mobile Apps and Desktop clients",
    ),
];
const FAILURES: &[u32] = &[50126, 50074, 50140, 50053];
const ROLES: &[(&str, &str)] = &[
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "Helpdesk Administrator",
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    ),
    ("Security Reader", "5d6b6bb7-de71-4623-b4af-96380a352509"),
    ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf"),
    (
        "Teams Administrator",
        "69091246-20e8-4a56-aa4d-066075b2a7a8",
    ),
];
/// A tiny JPEG (1x1) used as every generated profile photo.
const PHOTO_JPEG_B64: &str = "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=";

fn uuid(rng: &mut fastrand::Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid()
}

fn random_in(rng: &mut fastrand::Rng, net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let base = u32::from(n.network());
            let host_bits = 32 - u32::from(n.prefix_len());
            let span = if host_bits >= 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            IpAddr::V4(Ipv4Addr::from(base | rng.u32(1..span.max(2))))
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            let host_bits = 128 - u32::from(n.prefix_len());
            let mask = if host_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            IpAddr::V6(Ipv6Addr::from(base | (rng.u128(..) & mask).max(1)))
        }
    }
}

fn text(s: &'static str) -> Text {
    Cow::Borrowed(s)
}

impl Tenant {
    /// Build a tenant from a seed (see the [module docs](self)).
    pub fn generate(spec: &GenerateSpec) -> Tenant {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let day = spec.day.unwrap_or(DEFAULT_DAY);
        let nets: Vec<(IpNet, IpNet)> = OFFICES
            .iter()
            .map(|o| {
                (
                    o.v4.parse().expect("office v4"),
                    o.v6.parse().expect("office v6"),
                )
            })
            .collect();
        let home: (IpNet, IpNet) = (
            HOME_V4.parse().expect("home v4"),
            HOME_V6.parse().expect("home v6"),
        );
        let offices: Vec<Office> = OFFICES
            .iter()
            .zip(&nets)
            .map(|(o, (v4, v6))| Office {
                name: text(o.name),
                time_zone: text(o.tz),
                cidrs: vec![*v4, *v6],
                remote: o.remote,
                city: Some(text(o.city)),
                country: Some(text(o.country)),
            })
            .collect();
        // Local 07:00 of the working day, per office.
        let day_start: Vec<Timestamp> = OFFICES
            .iter()
            .map(|o| {
                let tz = TimeZone::get(o.tz).unwrap_or(TimeZone::UTC);
                day.at(7, 0, 0, 0)
                    .to_zoned(tz)
                    .map(|z| z.timestamp())
                    .unwrap_or(Timestamp::UNIX_EPOCH)
            })
            .collect();
        let on_site = OFFICES.iter().filter(|o| !o.remote).count();
        let created_base: Timestamp = "2023-01-09T09:00:00Z".parse().expect("constant timestamp");

        // Users.
        let mut users = Vec::with_capacity(spec.users);
        let mut user_office = Vec::with_capacity(spec.users);
        let mut remote_worker = Vec::with_capacity(spec.users);
        let mut taken: HashSet<String> = HashSet::with_capacity(spec.users);
        for i in 0..spec.users {
            let office = i % on_site;
            let o = &OFFICES[office];
            let (given, surname, local, display): (Text, Text, String, Text) = match i {
                0 => (
                    text("Megan"),
                    text("Bowen"),
                    "megan.bowen".into(),
                    text("Megan Bowen"),
                ),
                1 => (
                    text("Alex"),
                    text("Wilber"),
                    "alex.wilber".into(),
                    text("Alex Wilber"),
                ),
                2 => (
                    text("Seán"),
                    text("O'Brien"),
                    "sean.o'brien".into(),
                    text("Seán O'Brien"),
                ),
                3 => (
                    text("Reception"),
                    text("Service"),
                    "$svc-reception".into(),
                    text("Reception Service"),
                ),
                _ => {
                    let g = GIVEN[rng.usize(..GIVEN.len())];
                    let s = SURNAMES[rng.usize(..SURNAMES.len())];
                    let base = format!("{}.{}", g.to_lowercase(), s.to_lowercase());
                    let local = if taken.contains(&base) {
                        format!("{base}{i}")
                    } else {
                        base
                    };
                    (text(g), text(s), local, Cow::Owned(format!("{g} {s}")))
                }
            };
            taken.insert(local.clone());
            let upn = format!("{local}@{DOMAIN}");
            let (availability, activity, location) = PRESENCES[rng.usize(..PRESENCES.len())];
            let id = uuid(&mut rng);
            users.push(User {
                id,
                user_principal_name: Cow::Owned(upn.clone()),
                display_name: display,
                given_name: Some(given),
                surname: Some(surname),
                mail: Some(Cow::Owned(upn)),
                job_title: Some(text(TITLES[rng.usize(..TITLES.len())])),
                department: Some(text(DEPARTMENTS[rng.usize(..DEPARTMENTS.len())])),
                office_location: Some(text(o.name)),
                mobile_phone: Some(Cow::Owned(format!(
                    "{} {:04}",
                    o.phone,
                    rng.u32(1000..10000)
                ))),
                business_phones: vec![Cow::Owned(format!("{} {:04}", o.phone, i % 10000))],
                account_enabled: true,
                usage_location: Some(text(o.usage)),
                employee_id: Some(Cow::Owned(format!("E{i:06}"))),
                city: Some(text(o.city)),
                country: Some(text(o.country)),
                company_name: Some(text("Contoso Emulated")),
                preferred_language: Some(text(if o.country == "DE" { "de-DE" } else { "en-US" })),
                created_date_time: created_base
                    .checked_add(SignedDuration::from_mins(i as i64 * 7))
                    .ok(),
                on_premises_extension_attributes: None,
                photo: (i % 3 == 0).then(|| Photo {
                    content_base64: text(PHOTO_JPEG_B64),
                    etag: None,
                    width: 648,
                    height: 648,
                }),
                presence: Some(Presence {
                    availability: text(availability),
                    activity: text(activity),
                    status_message: None,
                    is_out_of_office: false,
                    work_location_type: Some(text(location)),
                }),
                extra: Default::default(),
            });
            user_office.push(office);
            remote_worker.push(i >= 4 && rng.u8(..10) == 0);
        }

        // Groups, roles, units.
        let group_count = (spec.users / 25).clamp(12, 4000);
        let mut groups: Vec<DirectoryObject> = (0..group_count)
            .map(|g| {
                let name = match g % 4 {
                    0 => format!("Tier {} Support", g / 4 + 1),
                    1 => format!("{} Team {}", DEPARTMENTS[g % DEPARTMENTS.len()], g / 4 + 1),
                    2 => {
                        format!(
                            "Project {}",
                            ["Falcon", "Orion", "Atlas", "Nova", "Helix"][g % 5]
                        )
                        .to_string()
                            + &format!(" {}", g / 4 + 1)
                    }
                    _ => {
                        format!("All Staff {}", OFFICES[g % on_site].name)
                            + &format!(" {}", g / 4 + 1)
                    }
                };
                let security = g % 4 != 3;
                DirectoryObject {
                    id: uuid(&mut rng),
                    mail: (!security).then(|| Cow::Owned(format!("group{g}@{DOMAIN}"))),
                    display_name: Cow::Owned(name),
                    description: Some(Cow::Owned(format!("Generated group {g}"))),
                    security_enabled: Some(security),
                    mail_enabled: Some(!security),
                    role_template_id: None,
                    members: Vec::new(),
                }
            })
            .collect();
        let mut roles: Vec<DirectoryObject> = ROLES
            .iter()
            .map(|(name, template)| DirectoryObject {
                id: uuid(&mut rng),
                display_name: text(name),
                description: Some(Cow::Owned(format!("Members of {name}"))),
                security_enabled: None,
                mail_enabled: None,
                mail: None,
                role_template_id: Uuid::try_parse(template).ok(),
                members: Vec::new(),
            })
            .collect();
        let mut units: Vec<DirectoryObject> = OFFICES
            .iter()
            .filter(|o| !o.remote)
            .map(|o| DirectoryObject {
                id: uuid(&mut rng),
                display_name: Cow::Owned(format!("{} staff", o.name)),
                description: Some(Cow::Owned(format!("Administrative unit for {}", o.name))),
                security_enabled: None,
                mail_enabled: None,
                mail: None,
                role_template_id: None,
                members: Vec::new(),
            })
            .collect();
        for (i, u) in users.iter().enumerate() {
            if i == 0 {
                groups.iter_mut().for_each(|g| g.members.push(u.id));
                roles.iter_mut().for_each(|r| r.members.push(u.id));
                units.iter_mut().for_each(|a| a.members.push(u.id));
                continue;
            }
            units[user_office[i]].members.push(u.id);
            let n = rng.usize(1..4);
            let mut picked = Vec::with_capacity(n);
            for _ in 0..n {
                let g = rng.usize(..groups.len());
                if !picked.contains(&g) {
                    picked.push(g);
                    groups[g].members.push(u.id);
                }
            }
            if rng.u8(..50) == 0 {
                let r = rng.usize(..roles.len());
                roles[r].members.push(u.id);
            }
        }

        // Sign-ins.
        let mut sign_ins = Vec::with_capacity(if users.is_empty() { 0 } else { spec.sign_ins });
        if !users.is_empty() {
            let vpn = OFFICES
                .iter()
                .position(|o| o.remote)
                .expect("a remote office");
            for _ in 0..spec.sign_ins {
                let u = rng.usize(..users.len());
                let office = user_office[u];
                let roll = rng.u8(..100);
                // 0: office, 1: VPN, 2: home
                let place = if remote_worker[u] {
                    if roll < 60 { 1 } else { 2 }
                } else if roll < 80 {
                    0
                } else if roll < 88 {
                    1
                } else {
                    2
                };
                let v6 = rng.u8(..100) < 30;
                let net = match place {
                    0 => &nets[office],
                    1 => &nets[vpn],
                    _ => &home,
                };
                let ip = random_in(&mut rng, if v6 { &net.1 } else { &net.0 });
                let secs = rng.i64(0..11 * 3600);
                let millis = rng.i64(0..1000);
                let created = day_start[office]
                    .checked_add(SignedDuration::from_millis(secs * 1000 + millis))
                    .unwrap_or(day_start[office]);
                let delay_roll = rng.u8(..100);
                let delay_secs = if delay_roll < 85 {
                    rng.i64(30..300)
                } else if delay_roll < 97 {
                    rng.i64(300..900)
                } else {
                    rng.i64(900..1500)
                };
                let error_code = if rng.u8(..100) < 6 {
                    FAILURES[rng.usize(..FAILURES.len())]
                } else {
                    0
                };
                let (app_id, app_name) = APPS[rng.usize(..APPS.len())];
                let (os, browser, client) = DEVICES[rng.usize(..DEVICES.len())];
                let place_office = if place == 1 {
                    &OFFICES[vpn]
                } else {
                    &OFFICES[office]
                };
                sign_ins.push(SignIn {
                    id: uuid(&mut rng),
                    created_date_time: created,
                    visible_at: created
                        .checked_add(SignedDuration::from_secs(delay_secs))
                        .ok(),
                    user_id: users[u].id,
                    app_id: Uuid::try_parse(app_id).unwrap_or_default(),
                    app_display_name: text(app_name),
                    ip_address: ip,
                    error_code,
                    client_app_used: text(client),
                    is_interactive: client == "Browser" || rng.bool(),
                    sign_in_event_types: Vec::new(),
                    city: Some(text(place_office.city)),
                    country_or_region: Some(text(place_office.country)),
                    operating_system: Some(text(os)),
                    browser: Some(text(browser)),
                });
            }
            sign_ins.sort_unstable_by_key(|a| (a.created_date_time, a.id));
        }

        // Risky users: every 37th user from the 6th, levels in turn; no RNG draw, so the
        // rest of a seeded tenant stays as it was.
        let risky_users: Vec<RiskyUser> = users
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 37 == 5)
            .map(|(i, u)| RiskyUser {
                id: u.id,
                risk_level: text(["low", "medium", "high"][(i / 37) % 3]),
                risk_state: text("atRisk"),
                risk_detail: text("none"),
                risk_last_updated_date_time: Some(day_start[0]),
            })
            .collect();
        let all_permissions = [
            "Presence.Read.All",
            "Presence.ReadWrite.All",
            "User.Read.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
            "GroupMember.Read.All",
            "AuditLog.Read.All",
            "Organization.Read.All",
            "ProfilePhoto.Read.All",
            "User-PasswordProfile.ReadWrite.All",
            "User.RevokeSessions.All",
            "IdentityRiskyUser.Read.All",
            "IdentityRiskyUser.ReadWrite.All",
        ];
        let apps = vec![
            AppRegistration {
                client_id: Uuid::try_parse(FULL_APP_CLIENT_ID).expect("constant uuid"),
                display_name: text("Emulator full-access app"),
                client_secret: Some(text(FULL_APP_SECRET)),
                client_secret_expired: false,
                certificate: None,
                public_client: false,
                permissions: all_permissions.iter().map(|p| text(p)).collect(),
                // "Every permission": a role that may change any user's sensitive properties.
                directory_roles: vec![text("Privileged Authentication Administrator")],
            },
            AppRegistration {
                client_id: Uuid::try_parse(READ_APP_CLIENT_ID).expect("constant uuid"),
                display_name: text("Emulator user-read app"),
                client_secret: Some(text(READ_APP_SECRET)),
                client_secret_expired: false,
                certificate: None,
                public_client: false,
                permissions: vec![text("User.Read.All")],
                directory_roles: Vec::new(),
            },
        ];
        let mut delegated_users = Vec::new();
        if spec.users >= 1 {
            delegated_users.push(DelegatedUser {
                user_principal_name: text(DELEGATED_USER),
                password: text(DELEGATED_PASSWORD),
                mfa_required: false,
                locked: false,
                disabled: false,
                password_expired: false,
            });
        }
        if spec.users >= 2 {
            delegated_users.push(DelegatedUser {
                user_principal_name: text(MFA_USER),
                password: text(DELEGATED_PASSWORD),
                mfa_required: true,
                locked: false,
                disabled: false,
                password_expired: false,
            });
        }
        Tenant {
            tenant_id: Uuid::try_parse(TENANT_ID).expect("constant uuid"),
            display_name: text("Contoso Emulated"),
            domain: text(DOMAIN),
            premium: true,
            premium_p2: true,
            risky_users,
            offices,
            users,
            groups,
            directory_roles: roles,
            administrative_units: units,
            apps,
            delegated_users,
            sign_ins,
            faults: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses() {
        let s: GenerateSpec = "users=1000,sign_ins=10_000,seed=7,day=2025-01-06"
            .parse()
            .unwrap();
        assert_eq!((s.users, s.sign_ins, s.seed), (1000, 10_000, 7));
        assert_eq!(s.day, Some(jiff::civil::date(2025, 1, 6)));
        assert!("users=x".parse::<GenerateSpec>().is_err());
    }

    #[test]
    fn generated_tenant_is_valid_and_spread() {
        let t = Tenant::generate(&GenerateSpec {
            users: 200,
            sign_ins: 3000,
            seed: 3,
            day: None,
        });
        t.validate().unwrap();
        let zones: HashSet<_> = t.offices.iter().map(|o| o.time_zone.clone()).collect();
        assert!(zones.len() >= 2);
        let v6 = t.sign_ins.iter().filter(|s| s.ip_address.is_ipv6()).count();
        assert!((600..1200).contains(&v6), "{v6}");
        assert!(t.sign_ins.iter().any(|s| s.error_code != 0));
        assert!(t.sign_ins.iter().any(|s| {
            s.visible_at()
                > s.created_date_time
                    .checked_add(SignedDuration::from_mins(15))
                    .unwrap()
        }));
    }
}
