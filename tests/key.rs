//! FlowKey properties: canonical bidirectional form, and `Hash` agreeing with `Eq`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtable::{hash::default_hasher, Direction, FlowKey, FlowKeyV4, FlowKeyV6, KeyError, Zone};
use proptest::prelude::*;

fn sip<K: Hash>(k: &K) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

fn ahash<K: Hash>(s: &flowtable::DefaultHashBuilder, k: &K) -> u64 {
    s.hash_one(k)
}

proptest! {
    #[test]
    fn v4_both_directions_give_one_key(a: u32, b: u32, pa: u16, pb: u16, proto: u8, zone in 0u32..=Zone::MAX) {
        let z = Zone::new(zone).unwrap();
        let (k1, d1) = FlowKeyV4::new(proto, Ipv4Addr::from(a), pa, Ipv4Addr::from(b), pb, z);
        let (k2, d2) = FlowKeyV4::new(proto, Ipv4Addr::from(b), pb, Ipv4Addr::from(a), pa, z);
        prop_assert_eq!(k1, k2);
        prop_assert_eq!(sip(&k1), sip(&k2));
        if (a, pa) != (b, pb) {
            prop_assert_eq!(d1, d2.flip());
        }
        // The endpoints come back as given, in the packet's direction.
        prop_assert_eq!(k1.endpoints(d1), ((Ipv4Addr::from(a), pa), (Ipv4Addr::from(b), pb)));
        prop_assert_eq!((k1.proto(), k1.zone()), (proto, z));
    }

    #[test]
    fn v6_both_directions_give_one_key(a: u128, b: u128, pa: u16, pb: u16, proto: u8) {
        let (k1, d1) = FlowKeyV6::new(proto, Ipv6Addr::from(a), pa, Ipv6Addr::from(b), pb, Zone::DEFAULT);
        let (k2, _) = FlowKeyV6::new(proto, Ipv6Addr::from(b), pb, Ipv6Addr::from(a), pa, Zone::DEFAULT);
        prop_assert_eq!(k1, k2);
        prop_assert_eq!(sip(&k1), sip(&k2));
        prop_assert_eq!(k1.endpoints(d1).0, (Ipv6Addr::from(a), pa));
    }

    /// Hash and Eq agree: equal keys hash equally (under std's and the crate's hasher), and keys
    /// that differ in any one field compare unequal.
    #[test]
    fn hash_agrees_with_eq(a: u32, b: u32, pa: u16, pb: u16, proto: u8, zone in 0u32..=Zone::MAX, field in 0usize..6, delta in 1u32..1000) {
        let s = default_hasher();
        let z = Zone::new(zone).unwrap();
        let k = FlowKeyV4::new(proto, Ipv4Addr::from(a), pa, Ipv4Addr::from(b), pb, z).0;
        let same = FlowKeyV4::new(proto, Ipv4Addr::from(a), pa, Ipv4Addr::from(b), pb, z).0;
        prop_assert_eq!(k, same);
        prop_assert_eq!(ahash(&s, &k), ahash(&s, &same));
        let (mut a2, mut b2, mut pa2, mut pb2, mut pr2, mut z2) = (a, b, pa, pb, proto, zone);
        match field {
            0 => a2 = a2.wrapping_add(delta),
            1 => b2 = b2.wrapping_add(delta),
            2 => pa2 = pa2.wrapping_add(delta as u16 | 1),
            3 => pb2 = pb2.wrapping_add(delta as u16 | 1),
            4 => pr2 = pr2.wrapping_add(delta as u8 | 1),
            _ => z2 = (z2 + delta) & Zone::MAX,
        }
        let other = FlowKeyV4::new(pr2, Ipv4Addr::from(a2), pa2, Ipv4Addr::from(b2), pb2, Zone::new(z2).unwrap()).0;
        // Swapping both endpoints at once is the same flow; anything else is a different one.
        let swapped = (a2, pa2, b2, pb2) == (b, pb, a, pa) && (pr2, z2) == (proto, zone);
        if !swapped {
            prop_assert_ne!(k, other);
        }
        let kk = FlowKey::V4(k);
        prop_assert_eq!(sip(&kk), sip(&FlowKey::V4(same)));
    }
}

#[test]
fn mixed_families_are_an_error() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(FlowKey::new(6, v4, 1, v6, 2, Zone::DEFAULT).unwrap_err(), KeyError::MixedFamilies);
    assert_eq!(Zone::new(1 << 24).unwrap_err(), KeyError::ZoneTooLarge(1 << 24));
}

#[test]
fn icmp_query_id_stands_in_for_ports() {
    let a = Ipv4Addr::new(10, 0, 0, 2);
    let b = Ipv4Addr::new(10, 0, 0, 1);
    let (req, d1) = FlowKeyV4::icmp_query(1, a, b, 0x1234, Zone::DEFAULT);
    let (rep, d2) = FlowKeyV4::icmp_query(1, b, a, 0x1234, Zone::DEFAULT);
    assert_eq!(req, rep);
    assert_eq!((d1, d2), (Direction::Reverse, Direction::Forward));
    assert_eq!(req.lo(), (b, 0x1234));
}

#[test]
fn the_default_hasher_spreads_sequential_keys_over_shards() {
    // 4096 sequential client ports (a scan) over 16 shards picked by the hash's top bits.
    let s = default_hasher();
    let mut shards = [0usize; 16];
    for p in 0..4096u16 {
        let k = FlowKeyV4::new(6, Ipv4Addr::new(10, 0, 0, 1), p, Ipv4Addr::new(10, 0, 0, 2), 80, Zone::DEFAULT).0;
        shards[(ahash(&s, &k) >> 60) as usize] += 1;
    }
    let (min, max) = (shards.iter().min().unwrap(), shards.iter().max().unwrap());
    assert!(*min > 150 && *max < 370, "uneven: {shards:?}");
}
