//! The `[[vip.backend]]` tables: address, MAC, weight, and how many
//! backends a VIP and the whole file may hold.
use super::*;

#[test]
fn backend_family_must_match_the_vip() {
    assert_error(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\naddress = \"2001:db8::11\"\n",
        "lbd.toml:6:11: vip[0].backend[0].address: ",
        "2001:db8::11 is IPv6 but the VIP 198.18.0.100 is IPv4",
    );
}

#[test]
fn backend_address_must_be_valid() {
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip.backend]]\naddress = \"{}\"\n";
    for (address, detail) in [
        ("198.18.0.1.1", "is not an IPv4 or IPv6 address"),
        ("0.0.0.0", "unspecified"),
        ("239.1.1.1", "multicast"),
        ("198.18.0.100", "is the VIP's own address"),
    ] {
        assert_error(
            &text.replace("{}", address),
            "lbd.toml:6:11: vip[0].backend[0].address: ",
            detail,
        );
    }
    assert_error(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\nweight = 1\n",
        "lbd.toml:5:1: vip[0].backend[0].address: ",
        "required field is missing",
    );
}

#[test]
fn a_backend_is_no_address_of_this_load_balancer() {
    let file = |first: &str, second: &str| {
        format!(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n\
             [[vip.backend]]\naddress = \"{first}\"\n\
             [[vip]]\naddress = \"198.18.0.101\"\nport = 80\nforwarding = \"nat\"\n\
             nat_source = \"198.18.0.51\"\n\
             [[vip.backend]]\naddress = \"{second}\"\n"
        )
    };
    for (first, second, at, detail) in [
        (
            "198.18.0.101",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.101 is vip[1]'s address; a backend cannot be an address of this load balancer",
        ),
        (
            "198.18.0.50",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.50 is the NAT address of vip[0]; a backend cannot be",
        ),
        (
            "198.18.1.11",
            "198.18.0.50",
            "lbd.toml:16:11: vip[1].backend[0].address: ",
            "198.18.0.50 is the NAT address of vip[0]; a backend cannot be",
        ),
        (
            "198.18.0.51",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.51 is the NAT address of vip[1]; a backend cannot be",
        ),
    ] {
        assert_error(&file(first, second), at, detail);
    }
    assert_eq!(
        parse(&file("198.18.1.11", "198.18.1.12"))
            .unwrap()
            .vips
            .len(),
        2
    );
}

#[test]
fn duplicate_backend_is_rejected() {
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip.backend]]\naddress = \"198.18.0.11\"\n\
                [[vip.backend]]\naddress = \"198.18.0.12\"\n\
                [[vip.backend]]\n  address = \"198.18.0.11\"\n";
    assert_error(
        text,
        "lbd.toml:10:13: vip[0].backend[2].address: ",
        "198.18.0.11 is already vip[0].backend[0]",
    );
}

#[test]
fn mac_must_be_well_formed_unicast_and_non_zero() {
    for bad in [
        "02:00:00:00:00:1",
        "02:00:00:00:00:111",
        "02-00-00-00-00-11",
        "02:00:00:00:00",
        "02:00:00:00:00:11:22",
        "02:00:00:00:00:1g",
        "02:00:00:00:00:+1",
        "",
    ] {
        assert_error(
            &doc("", &format!("mac = \"{bad}\"")),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "is not a MAC address of the form aa:bb:cc:dd:ee:ff",
        );
    }
    assert_error(
        &doc("", "mac = \"01:00:5E:00:00:01\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "multicast",
    );
    assert_error(
        &doc("", "mac = \"ff:ff:ff:ff:ff:ff\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "multicast",
    );
    assert_error(
        &doc("", "mac = \"00:00:00:00:00:00\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "all-zero",
    );
    assert_error(
        &doc("", "mac = 2"),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "expected a string",
    );
    let config = parse(&doc("", "mac = \"AA:bb:Cc:00:01:ff\"")).unwrap();
    assert_eq!(
        config.vips[0].backends[0].mac,
        Some(Mac([0xaa, 0xbb, 0xcc, 0, 1, 0xff]))
    );
}

#[test]
fn weight_must_be_in_range() {
    assert_error(
        &doc("", "  weight = 20000"),
        "lbd.toml:8:12: vip[0].backend[0].weight: ",
        "20000 is out of range 0..=10000",
    );
    assert_error(
        &doc("", "weight = -1"),
        "lbd.toml:8:10: vip[0].backend[0].weight: ",
        "out of range",
    );
    assert_eq!(
        parse(&doc("", "weight = 0")).unwrap().vips[0].backends[0].weight,
        0
    );
}

#[test]
fn error_points_at_the_right_backend_of_the_right_vip() {
    let mut text = String::from("interface = \"eth0\"\n");
    for v in 0..2 {
        text.push_str(&format!(
            "[[vip]]\naddress = \"198.18.0.{}\"\nport = 80\n",
            100 + v
        ));
        for b in 0..3 {
            let weight = if (v, b) == (1, 2) { 20000 } else { 1 };
            text.push_str(&format!(
                "  [[vip.backend]]\n  address = \"198.18.1.{b}\"\n  weight = {weight}\n"
            ));
        }
    }
    // Line 1 interface; each VIP takes 3 + 3 * 3 = 12 lines; vip[1] starts at line 14;
    // its backend[2] starts at line 14 + 3 + 6 = 23, weight on line 25.
    assert_error(
        &text,
        "lbd.toml:25:12: vip[1].backend[2].weight: ",
        "20000 is out of range",
    );
}

#[test]
fn too_many_backends_are_rejected() {
    let backends = |n: usize| {
        let mut text =
            String::from("interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80\n");
        for i in 0..n {
            text.push_str(&format!(
                "[[vip.backend]]\naddress = \"10.1.{}.{}\"\n",
                i / 256,
                i % 256
            ));
        }
        text
    };
    assert_eq!(
        parse(&backends(MAX_BACKENDS_PER_VIP)).unwrap().vips[0]
            .backends
            .len(),
        MAX_BACKENDS_PER_VIP
    );
    let line = 5 + 2 * MAX_BACKENDS_PER_VIP;
    assert_error(
        &backends(MAX_BACKENDS_PER_VIP + 1),
        &format!("lbd.toml:{line}:1: vip[0].backend[1000]: "),
        "too many backends; at most 1000",
    );
}

#[test]
fn too_many_backends_in_all_are_rejected() {
    // Five VIPs of MAX_BACKENDS_PER_VIP: the fifth goes past the total.
    let per_vip = MAX_BACKENDS_PER_VIP;
    let mut text = String::from("interface = \"eth0\"\n");
    let mut lines = 1;
    let mut line_of_extra = 0;
    for v in 0..5 {
        text.push_str(&format!("[[vip]]\naddress = \"10.0.{v}.1\"\nport = 80\n"));
        lines += 3;
        for i in 0..per_vip {
            if v * per_vip + i == MAX_BACKENDS_TOTAL {
                line_of_extra = lines + 1;
            }
            text.push_str(&format!(
                "[[vip.backend]]\naddress = \"10.{}.{}.{}\"\n",
                v + 1,
                i / 256,
                i % 256
            ));
            lines += 2;
        }
    }
    let index = MAX_BACKENDS_TOTAL - 4 * per_vip;
    assert_error(
        &text,
        &format!("lbd.toml:{line_of_extra}:1: vip[4].backend[{index}]: "),
        "too many backends; at most 4095 are allowed across all VIPs",
    );
    // Exactly the total fits.
    let cut = text
        .match_indices("[[vip.backend]]")
        .nth(MAX_BACKENDS_TOTAL)
        .map(|(at, _)| at)
        .unwrap();
    let config = parse(&text[..cut]).unwrap();
    let total: usize = config.vips.iter().map(|v| v.backends.len()).sum();
    assert_eq!(total, MAX_BACKENDS_TOTAL);
}
