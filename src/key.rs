//! The crate's flow key: a bidirectional 5-tuple plus a zone.
//!
//! A key is stored in *canonical* form: of the two endpoints `(address, port)`, the lower one (by
//! address bytes, then port) comes first. Both directions of a connection therefore build the same
//! key, and the constructors tell the caller which [`Direction`] the packet travelled in.
//!
//! `Hash` and `Eq` agree: both are functions of every byte of the key and nothing else (there is no
//! padding), so equal keys hash equally (tested below and in `tests/key.rs`).
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the crate names; any other `u8` works too.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// A routing or tenant discriminator (VRF id, VXLAN VNI, VLAN): 24 bits.
///
/// Flows in different zones never share an entry, even with equal 5-tuples.
///
/// # Examples
///
/// ```
/// use flowtable::Zone;
///
/// assert_eq!(Zone::new(4094).unwrap().get(), 4094);
/// assert!(Zone::new(1 << 24).is_err()); // a VNI has 24 bits
/// ```
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Zone([u8; 3]);

impl Zone {
    /// The zone of traffic that has none.
    pub const DEFAULT: Zone = Zone([0; 3]);
    /// The largest zone value, `2^24 - 1`.
    pub const MAX: u32 = (1 << 24) - 1;

    /// A zone, or an error if `value` does not fit in 24 bits.
    pub const fn new(value: u32) -> Result<Zone, KeyError> {
        if value > Self::MAX {
            return Err(KeyError::ZoneTooLarge(value));
        }
        let b = value.to_be_bytes();
        Ok(Zone([b[1], b[2], b[3]]))
    }
    /// The zone's value.
    pub const fn get(self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }
}

impl From<u16> for Zone {
    fn from(v: u16) -> Zone {
        let b = v.to_be_bytes();
        Zone([0, b[0], b[1]])
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.get())
    }
}

/// Why a key could not be built.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// A zone value over 24 bits.
    ZoneTooLarge(u32),
    /// One address is IPv4 and the other IPv6.
    MixedFamilies,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::ZoneTooLarge(v) => write!(f, "zone {v} does not fit in 24 bits"),
            KeyError::MixedFamilies => f.write_str("source and destination are of different IP families"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Which way a packet travelled relative to its canonical key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The packet's source is the key's first (lower) endpoint.
    Forward,
    /// The packet's source is the key's second (higher) endpoint.
    Reverse,
}

impl Direction {
    /// The other direction.
    pub fn flip(self) -> Direction {
        match self {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        }
    }
}

macro_rules! family_key {
    ($(#[$doc:meta])* $name:ident, $addr:ty, $n:literal, $to_bytes:expr, $from_bytes:expr) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
        #[repr(C)]
        pub struct $name {
            addr_lo: [u8; $n],
            addr_hi: [u8; $n],
            port_lo: u16,
            port_hi: u16,
            proto: u8,
            zone: Zone,
        }

        impl $name {
            /// The canonical key of a packet from `src:sport` to `dst:dport`, and the packet's
            /// direction relative to it. Both directions of a connection give the same key.
            pub fn new(proto: u8, src: $addr, sport: u16, dst: $addr, dport: u16, zone: Zone) -> (Self, Direction) {
                let s: [u8; $n] = $to_bytes(src);
                let d: [u8; $n] = $to_bytes(dst);
                if (s, sport) <= (d, dport) {
                    (Self { addr_lo: s, addr_hi: d, port_lo: sport, port_hi: dport, proto, zone }, Direction::Forward)
                } else {
                    (Self { addr_lo: d, addr_hi: s, port_lo: dport, port_hi: sport, proto, zone }, Direction::Reverse)
                }
            }

            /// The key of an ICMP or ICMPv6 query (echo): the query identifier stands in for both ports.
            pub fn icmp_query(proto: u8, src: $addr, dst: $addr, ident: u16, zone: Zone) -> (Self, Direction) {
                Self::new(proto, src, ident, dst, ident, zone)
            }

            /// The IP protocol number.
            pub fn proto(&self) -> u8 {
                self.proto
            }
            /// The zone.
            pub fn zone(&self) -> Zone {
                self.zone
            }
            /// The lower endpoint (address, port).
            pub fn lo(&self) -> ($addr, u16) {
                ($from_bytes(self.addr_lo), self.port_lo)
            }
            /// The higher endpoint (address, port).
            pub fn hi(&self) -> ($addr, u16) {
                ($from_bytes(self.addr_hi), self.port_hi)
            }
            /// The endpoints as seen by a packet travelling in `dir`: (source, destination).
            pub fn endpoints(&self, dir: Direction) -> (($addr, u16), ($addr, u16)) {
                match dir {
                    Direction::Forward => (self.lo(), self.hi()),
                    Direction::Reverse => (self.hi(), self.lo()),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (a, pa) = self.lo();
                let (b, pb) = self.hi();
                write!(f, "{}[{} {a}:{pa} <-> {b}:{pb} zone {}]", stringify!($name), self.proto, self.zone.get())
            }
        }
    };
}

family_key!(
    /// An IPv4 flow key: 16 bytes, `Copy`, canonical (bidirectional).
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{Direction, FlowKeyV4, Zone, proto};
    /// use std::net::Ipv4Addr;
    ///
    /// let client = Ipv4Addr::new(192, 0, 2, 7);
    /// let server = Ipv4Addr::new(198, 51, 100, 1);
    /// let (k1, d1) = FlowKeyV4::new(proto::TCP, client, 40000, server, 443, Zone::DEFAULT);
    /// let (k2, d2) = FlowKeyV4::new(proto::TCP, server, 443, client, 40000, Zone::DEFAULT);
    /// assert_eq!(k1, k2);
    /// assert_eq!((d1, d2), (Direction::Forward, Direction::Reverse));
    /// assert_eq!(std::mem::size_of::<FlowKeyV4>(), 16);
    /// ```
    FlowKeyV4, Ipv4Addr, 4, |a: Ipv4Addr| a.octets(), Ipv4Addr::from
);

family_key!(
    /// An IPv6 flow key: 40 bytes, `Copy`, canonical (bidirectional).
    FlowKeyV6, Ipv6Addr, 16, |a: Ipv6Addr| a.octets(), Ipv6Addr::from
);

impl Hash for FlowKeyV4 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Two words cover all 16 bytes (Eq compares the same bytes, so Hash and Eq agree).
        let a = u64::from(u32::from_ne_bytes(self.addr_lo)) | u64::from(u32::from_ne_bytes(self.addr_hi)) << 32;
        let z = self.zone.0;
        let b = u64::from(self.port_lo)
            | u64::from(self.port_hi) << 16
            | u64::from(self.proto) << 32
            | u64::from(z[0]) << 40
            | u64::from(z[1]) << 48
            | u64::from(z[2]) << 56;
        state.write_u64(a);
        state.write_u64(b);
    }
}

impl Hash for FlowKeyV6 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.addr_lo));
        state.write_u128(u128::from_ne_bytes(self.addr_hi));
        let z = self.zone.0;
        state.write_u64(
            u64::from(self.port_lo)
                | u64::from(self.port_hi) << 16
                | u64::from(self.proto) << 32
                | u64::from(z[0]) << 40
                | u64::from(z[1]) << 48
                | u64::from(z[2]) << 56,
        );
    }
}

/// A flow key of either IP family.
///
/// Use [`FlowKeyV4`] alone where only IPv4 is seen: it is 16 bytes against this type's 42.
///
/// # Examples
///
/// ```
/// use flowtable::{Direction, FlowKey, Zone, proto};
/// use std::net::IpAddr;
///
/// let a: IpAddr = "2001:db8::1".parse().unwrap();
/// let b: IpAddr = "2001:db8::2".parse().unwrap();
/// let (key, dir) = FlowKey::new(proto::UDP, b, 53, a, 5353, Zone::DEFAULT).unwrap();
/// assert_eq!(dir, Direction::Reverse);
/// assert_eq!(key.lo(), (a, 5353));
/// assert!(FlowKey::new(proto::UDP, "192.0.2.1".parse().unwrap(), 1, a, 2, Zone::DEFAULT).is_err());
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowKey {
    /// IPv4.
    V4(FlowKeyV4),
    /// IPv6.
    V6(FlowKeyV6),
}

impl FlowKey {
    /// The canonical key of a packet, and its direction; an error if the families differ.
    pub fn new(
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        zone: Zone,
    ) -> Result<(FlowKey, Direction), KeyError> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (k, dir) = FlowKeyV4::new(proto, s, sport, d, dport, zone);
                Ok((FlowKey::V4(k), dir))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let (k, dir) = FlowKeyV6::new(proto, s, sport, d, dport, zone);
                Ok((FlowKey::V6(k), dir))
            }
            _ => Err(KeyError::MixedFamilies),
        }
    }
    /// The IP protocol number.
    pub fn proto(&self) -> u8 {
        match self {
            FlowKey::V4(k) => k.proto(),
            FlowKey::V6(k) => k.proto(),
        }
    }
    /// The zone.
    pub fn zone(&self) -> Zone {
        match self {
            FlowKey::V4(k) => k.zone(),
            FlowKey::V6(k) => k.zone(),
        }
    }
    /// The lower endpoint.
    pub fn lo(&self) -> (IpAddr, u16) {
        match self {
            FlowKey::V4(k) => (IpAddr::V4(k.lo().0), k.lo().1),
            FlowKey::V6(k) => (IpAddr::V6(k.lo().0), k.lo().1),
        }
    }
    /// The higher endpoint.
    pub fn hi(&self) -> (IpAddr, u16) {
        match self {
            FlowKey::V4(k) => (IpAddr::V4(k.hi().0), k.hi().1),
            FlowKey::V6(k) => (IpAddr::V6(k.hi().0), k.hi().1),
        }
    }
    /// The endpoints as seen by a packet travelling in `dir`: (source, destination).
    pub fn endpoints(&self, dir: Direction) -> ((IpAddr, u16), (IpAddr, u16)) {
        match dir {
            Direction::Forward => (self.lo(), self.hi()),
            Direction::Reverse => (self.hi(), self.lo()),
        }
    }
}

impl From<FlowKeyV4> for FlowKey {
    fn from(k: FlowKeyV4) -> FlowKey {
        FlowKey::V4(k)
    }
}

impl From<FlowKeyV6> for FlowKey {
    fn from(k: FlowKeyV6) -> FlowKey {
        FlowKey::V6(k)
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowKey::V4(k) => k.fmt(f),
            FlowKey::V6(k) => k.fmt(f),
        }
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_compact() {
        assert_eq!(std::mem::size_of::<FlowKeyV4>(), 16);
        assert_eq!(std::mem::size_of::<FlowKeyV6>(), 40);
        assert!(std::mem::size_of::<FlowKey>() <= 42);
    }

    #[test]
    fn equal_ports_and_addresses_are_forward() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let (k, d) = FlowKeyV4::icmp_query(proto::ICMP, a, a, 7, Zone::DEFAULT);
        assert_eq!(d, Direction::Forward);
        assert_eq!(k.lo(), (a, 7));
    }

    #[test]
    fn zones_separate_flows() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let (k1, _) = FlowKeyV4::new(proto::UDP, a, 1, b, 2, Zone::DEFAULT);
        let (k2, _) = FlowKeyV4::new(proto::UDP, a, 1, b, 2, Zone::from(7u16));
        assert_ne!(k1, k2);
        assert_eq!(Zone::new(Zone::MAX).unwrap().get(), Zone::MAX);
    }
}
