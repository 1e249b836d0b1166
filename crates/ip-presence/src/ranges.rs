//! The IP range table: longest-prefix match of an address to a configured range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::config::{ConfigError, IpRange, parse_cidr};

/// `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d`; everything else is unchanged.
#[inline]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Ranges by prefix, built once from the configuration.
#[derive(Debug, Clone)]
pub struct IpRangeTable {
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
    ranges: Vec<IpRange>,
}

/// The range an address matched, and through which block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeMatch<'a> {
    pub index: u32,
    pub prefix: IpNet,
    pub range: &'a IpRange,
}

impl IpRangeTable {
    /// Build the table. Errors name the offending entry (`/ranges/3/cidrs/1`).
    pub fn new(ranges: &[IpRange]) -> Result<Self, Vec<ConfigError>> {
        let mut v4 = PrefixMap::new();
        let mut v6 = PrefixMap::new();
        let mut errors = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            for (j, cidr) in range.cidrs.iter().enumerate() {
                let here = format!("/ranges/{i}/cidrs/{j}");
                let prev = match parse_cidr(cidr) {
                    Ok(IpNet::V4(n)) => v4.insert(n, i as u32),
                    Ok(IpNet::V6(n)) => v6.insert(n, i as u32),
                    Err(message) => {
                        errors.push(ConfigError::new(here, message));
                        continue;
                    }
                };
                if let Some(first) = prev {
                    errors.push(ConfigError::new(
                        here,
                        format!(
                            "the same prefix is already in range {:?}",
                            ranges[first as usize].name
                        ),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            v4,
            v6,
            ranges: ranges.to_vec(),
        })
    }

    /// The range with the longest prefix containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<RangeMatch<'_>> {
        match canonical_ip(ip) {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    #[inline]
    fn lookup_v4(&self, a: Ipv4Addr) -> Option<RangeMatch<'_>> {
        let (p, &ix) = self.v4.get_lpm(&Ipv4Net::from(a))?;
        Some(RangeMatch {
            index: ix,
            prefix: IpNet::V4(p),
            range: &self.ranges[ix as usize],
        })
    }

    #[inline]
    fn lookup_v6(&self, a: Ipv6Addr) -> Option<RangeMatch<'_>> {
        let (p, &ix) = self.v6.get_lpm(&Ipv6Net::from(a))?;
        Some(RangeMatch {
            index: ix,
            prefix: IpNet::V6(p),
            range: &self.ranges[ix as usize],
        })
    }

    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    pub fn range(&self, index: u32) -> &IpRange {
        &self.ranges[index as usize]
    }
}

/// The block suggested for an unmatched address: its /24 (IPv4) or /48 (IPv6).
pub fn suggested_block(ip: IpAddr) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, 24).expect("24 <= 32").trunc()),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, 48).expect("48 <= 128").trunc()),
    }
}
