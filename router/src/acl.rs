//! Client allowlist: the TCP peer address (never X-Forwarded-For) must fall in
//! `ALLOWED_NETWORKS`. IPv4-mapped IPv6 peers (`::ffff:10.0.0.5`) are checked
//! as the IPv4 address they are. Checked once per connection.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

#[derive(Debug, Clone)]
pub struct Acl {
    networks: Vec<IpNetwork>,
}

impl Acl {
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        Self { networks }
    }

    pub fn allows(&self, peer: IpAddr) -> bool {
        let ip = peer.to_canonical();
        self.networks.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stonescriptdb_shared::config::{loopback_networks, parse_networks};

    #[test]
    fn loopback_default() {
        let acl = Acl::new(loopback_networks());
        assert!(acl.allows("127.0.0.1".parse().unwrap()));
        assert!(acl.allows("127.9.9.9".parse().unwrap()));
        assert!(acl.allows("::1".parse().unwrap()));
        assert!(acl.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!acl.allows("10.0.0.1".parse().unwrap()));
        assert!(!acl.allows("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn mapped_addresses_match_ipv4_networks() {
        let acl = Acl::new(parse_networks("10.0.1.0/24").unwrap());
        assert!(acl.allows("::ffff:10.0.1.77".parse().unwrap()));
        assert!(!acl.allows("::ffff:10.0.2.1".parse().unwrap()));
        assert!(!acl.allows("127.0.0.1".parse().unwrap()));
    }
}
